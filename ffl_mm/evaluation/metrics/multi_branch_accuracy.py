# Copyright (c) ffl_mm contributors.
"""Top-k accuracy of every output of a multi-branch model at once."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.evaluation import Accuracy

from ffl_mm.registry import METRICS
from ...utils import output_names as names


@METRICS.register_module()
class MultiBranchAccuracy(BaseMetric):
    """Accuracy of the selected prediction and of each branch, the
    ensemble and the fused classifier, in one evaluation.

    It reads what :class:`MultiBranchClassifier.predict` stores on each
    ``DataSample``: ``pred_score`` (the output ``test_cfg.predict``
    selects), ``branch_scores`` ``(N, C)``, ``ensemble_score`` and
    ``fused_score``. With the default prefix the keys are::

        accuracy/top1            accuracy/top5            (selected output)
        accuracy/fused_top1      accuracy/fused_top5
        accuracy/ensemble_top1   ...
        accuracy/branch0_top1    ...

    so ``accuracy/top1`` means what it means for MMPretrain's ``Accuracy``
    (and works for ``save_best``). Top-k values larger than the number of
    classes are skipped. On a plain classifier's samples only the
    selected-output keys appear.

    The arithmetic is MMPretrain's :meth:`Accuracy.calculate`.

    Args:
        topk (int | Sequence[int]): Defaults to ``(1, 5)``.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Defaults to ``'accuracy'``.
    """

    default_prefix: Optional[str] = 'accuracy'

    def __init__(self,
                 topk: Sequence[int] = (1, 5),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'MultiBranchAccuracy: topk={topk!r} must be '
                             'positive integers.')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            result = {
                'pred_score': sample['pred_score'].cpu(),
                'gt_label': sample['gt_label'].cpu(),
            }
            for key in (names.BRANCH_SCORES_FIELD, names.ENSEMBLE_SCORE_FIELD,
                        names.FUSED_SCORE_FIELD):
                if key in sample:
                    result[key] = sample[key].cpu()
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        target = torch.cat([r['gt_label'] for r in results])
        outputs = {None: torch.stack([r['pred_score'] for r in results])}
        first = results[0]
        for name, field in ((names.FUSED, names.FUSED_SCORE_FIELD),
                            (names.ENSEMBLE, names.ENSEMBLE_SCORE_FIELD)):
            if field in first:
                outputs[name] = torch.stack([r[field] for r in results])
        if names.BRANCH_SCORES_FIELD in first:
            branches = torch.stack(
                [r[names.BRANCH_SCORES_FIELD] for r in results])
            for i in range(branches.size(1)):
                outputs[names.branch_name(i)] = branches[:, i]
        num_classes = outputs[None].size(1)
        topk = tuple(k for k in self.topk if k <= num_classes)
        metrics = {}
        for name, scores in outputs.items():
            accs = Accuracy.calculate(scores, target, topk=topk)
            for k, acc in zip(topk, accs):
                # BaseMetric adds the prefix
                metrics[names.metric_key(name, k, prefix=None)] = float(
                    acc[0])
        return metrics
