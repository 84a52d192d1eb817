# Copyright (c) ffl_mm contributors.
"""What a multi-branch classifier gives in testing: every output's logits
by name, the predictions MMPretrain's evaluators read, and the features
of one output (``extract_feat``)."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from ...utils import output_names as names
from .branch_features import BranchFeatures


class PredictOutputsMixin:
    """``predict``, ``extract_feat`` and the named logits of
    :class:`MultiBranchClassifier` (which has ``_forward_all``,
    ``forward_features``, ``necks``, ``heads``, ``num_branches`` and
    ``predict_mode``)."""

    @staticmethod
    def _named_logits(branch_logits, others) -> Dict[str, torch.Tensor]:
        logits = {names.branch_name(i): z for i, z in enumerate(branch_logits)}
        logits.update(others)
        return logits

    def extract_feat(self,
                     inputs: torch.Tensor,
                     stage: str = 'neck') -> Tuple[torch.Tensor, ...]:
        """Features of the output that ``test_cfg.predict`` selects, at
        ``stage`` ``'backbone'``, ``'neck'`` or ``'pre_logits'`` (as
        ``ImageClassifier.extract_feat``): for ``branch{i}`` that branch's;
        for ``ensemble`` a tuple of each branch's (last) feature.

        Returns:
            tuple[Tensor]: As described above.
        """
        if stage not in ('backbone', 'neck', 'pre_logits'):
            raise ValueError(f'Invalid output stage "{stage}", please choose '
                             'from "backbone", "neck" and "pre_logits"')
        return self._extract(self.forward_features(inputs), stage)

    def _extract(self, features: BranchFeatures, stage: str):
        """:meth:`extract_feat` for the branches and the ensemble."""

        def branch_feat(i):
            if stage == 'backbone':
                return features.feats[i]
            feats = self.necks[i](features.feats[i])
            if stage == 'neck':
                return feats
            return (self.heads[i].pre_logits(feats), )

        if self.predict_mode == names.ENSEMBLE:
            return tuple(
                branch_feat(i)[-1] for i in range(self.num_branches))
        return branch_feat(names.branch_index(self.predict_mode))

    def predict(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """Predict with the output that ``test_cfg.predict`` selects.

        Each returned :obj:`DataSample` has ``pred_score`` ``(C, )`` and
        ``pred_label`` from the selected output, and also
        ``branch_scores`` ``(N, C)``, ``ensemble_score`` ``(C, )`` and
        (with fusion) ``fused_score`` ``(C, )`` — softmax probabilities of
        every output, for :class:`MultiBranchAccuracy`.

        Args:
            inputs (Tensor): ``(B, 3, H, W)``.
            data_samples (list[DataSample], optional): Filled in place;
                created when None.
        """
        logits = self._named_logits(*self._forward_all(inputs)[:2])
        scores = {name: F.softmax(z, dim=1) for name, z in logits.items()}
        branch_scores = torch.stack([
            scores[names.branch_name(i)] for i in range(self.num_branches)
        ], dim=1)
        selected = scores[self.predict_mode]
        labels = selected.argmax(dim=1, keepdim=True)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(selected.size(0))]
        for i, sample in enumerate(data_samples):
            sample.set_pred_score(selected[i]).set_pred_label(labels[i])
            sample.set_field(branch_scores[i], names.BRANCH_SCORES_FIELD)
            sample.set_field(scores[names.ENSEMBLE][i],
                             names.ENSEMBLE_SCORE_FIELD)
            if names.FUSED in scores:
                sample.set_field(scores[names.FUSED][i],
                                 names.FUSED_SCORE_FIELD)
        return data_samples
