# Copyright (c) ffl_mm contributors.
"""Test-time augmentation that averages every output of a multi-branch
model."""
from typing import List

import torch
from mmpretrain.models.tta import AverageClsScoreTTA
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from ...utils.output_names import (BRANCH_SCORES_FIELD, ENSEMBLE_SCORE_FIELD,
                                  FUSED_SCORE_FIELD)


@MODELS.register_module()
class MultiBranchTTA(AverageClsScoreTTA):
    """MMPretrain's ``AverageClsScoreTTA`` for :class:`MultiBranchClassifier`:
    besides ``pred_score``, every score that ``predict`` stores is averaged
    over the views (``branch_scores`` ``(N, C)``, ``ensemble_score`` and
    ``fused_score`` ``(C, )``), and ``pred_label`` is the argmax of the
    averaged ``pred_score``.

    ``AverageClsScoreTTA`` alone averages ``pred_score`` only and keeps the
    other scores of the first view, so ``MultiBranchAccuracy`` would report
    per-branch, ensemble and fused accuracies of one view. ffl_mm's
    multi-branch configs set ``tta_model = dict(type='MultiBranchTTA')``,
    which MMPretrain's ``tools/test.py --tta`` (and ours) then use with its
    flip augmentation. On a plain classifier's samples it is
    ``AverageClsScoreTTA``.

    Args:
        module (dict | nn.Module): The multi-branch model.
    """

    FIELDS = (BRANCH_SCORES_FIELD, ENSEMBLE_SCORE_FIELD, FUSED_SCORE_FIELD)

    def _merge_single_sample(self,
                             data_samples: List[DataSample]) -> DataSample:
        merged = super()._merge_single_sample(data_samples)
        merged.set_pred_label(merged.pred_score.argmax(dim=-1, keepdim=True))
        for field in self.FIELDS:
            if field in data_samples[0]:
                mean = torch.stack([s.get(field) for s in data_samples
                                    ]).mean(dim=0)
                merged.set_field(mean, field)
        return merged
