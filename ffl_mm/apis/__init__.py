# Copyright (c) ffl_mm contributors.
"""What a user calls from Python, as ``mmpretrain.apis``: exporting a
student or the fused model as a model to deploy."""
from .export import (ExportError, export_branch, export_fused,
                     exported_checkpoint, ffl_mm_types)
from .model_cfg import data_preprocessor_cfg, runner_model_cfg

__all__ = [
    'ExportError', 'data_preprocessor_cfg', 'export_branch', 'export_fused',
    'exported_checkpoint', 'ffl_mm_types', 'runner_model_cfg'
]
