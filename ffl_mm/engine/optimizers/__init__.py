# Copyright (c) ffl_mm contributors.
from .checked_constructor import (CheckedOptimWrapperConstructor,
                                  unmatched_custom_keys)

__all__ = ['CheckedOptimWrapperConstructor', 'unmatched_custom_keys']
