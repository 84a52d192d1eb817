# Copyright (c) ffl_mm contributors.
from .dataset_check_hook import (DatasetCheckError, DatasetCheckHook,
                                 check_dataset, model_num_classes)
from ffl_mm.datasets.named_pipeline import SamplePipelineError
from .epoch_seed_hook import EpochSeedHook, epoch_seed
from .finite_loss_hook import (FiniteLossHook, NonFiniteLossError,
                               NonFiniteOutputError)
from .resume_check_hook import ResumeCheckHook
from .safe_checkpoint_hook import NonFiniteWeightsError, SafeCheckpointHook

__all__ = [
    'DatasetCheckError', 'DatasetCheckHook', 'EpochSeedHook',
    'FiniteLossHook', 'NonFiniteLossError', 'NonFiniteOutputError',
    'NonFiniteWeightsError', 'ResumeCheckHook', 'SafeCheckpointHook',
    'SamplePipelineError',
    'check_dataset', 'epoch_seed', 'model_num_classes'
]
