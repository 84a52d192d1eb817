# Copyright (c) ffl_mm contributors.
from .checked_constructor import (CheckedOptimWrapperConstructor,
                                  unmatched_custom_keys)
from .merged_groups_constructor import MergedGroupsOptimWrapperConstructor
from .param_groups import merge_param_groups, regroup_state_dict

__all__ = [
    'CheckedOptimWrapperConstructor', 'MergedGroupsOptimWrapperConstructor',
    'unmatched_custom_keys', 'merge_param_groups', 'regroup_state_dict'
]
