# Copyright (c) ffl_mm contributors.
"""The names of a multi-branch model's outputs, in one place.

A model with N branches has the outputs ``branch0`` .. ``branch{N-1}``,
``ensemble`` (the mean of the branch logits) and, with a fusion module,
``fused``. The same names select the prediction (``test_cfg.predict``),
key the logits of ``mode='tensor'``, name the metrics
(``accuracy/branch0_top1``, ``accuracy/fused_top5``, ...) and the rows of
the results tables. Everything that formats or parses them uses this
module.
"""
import re
from typing import List, Optional, Tuple

ENSEMBLE = 'ensemble'
FUSED = 'fused'

#: The ``DataSample`` fields that ``MultiBranchClassifier.predict`` fills
#: besides ``pred_score``: ``(N, C)`` branch scores, ``(C, )`` the others.
BRANCH_SCORES_FIELD = 'branch_scores'
ENSEMBLE_SCORE_FIELD = 'ensemble_score'
FUSED_SCORE_FIELD = 'fused_score'

_BRANCH = re.compile(r'branch(\d+)')
_METRIC = re.compile(r'(?:(?P<prefix>.+)/)?(?:(?P<name>branch\d+|ensemble|'
                     r'fused)_)?top(?P<k>\d+)')


def branch_name(index: int) -> str:
    """``'branch{index}'``."""
    return f'branch{int(index)}'


def branch_index(name: str) -> Optional[int]:
    """The ``i`` of ``'branch{i}'``; None for any other name."""
    match = _BRANCH.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def output_names(num_branches: int, with_fusion: bool) -> List[str]:
    """Every output of a model: the branches, ``ensemble``, ``fused``."""
    names = [branch_name(i) for i in range(num_branches)] + [ENSEMBLE]
    return names + [FUSED] if with_fusion else names


def output_order(name: str) -> Tuple[int, int]:
    """Sort key: branches by index, then ``ensemble``, ``fused``, others."""
    index = branch_index(name)
    if index is not None:
        return (0, index)
    return ({ENSEMBLE: 1, FUSED: 2}.get(name, 3), 0)


def metric_key(name: Optional[str], k: int = 1,
               prefix: Optional[str] = 'accuracy') -> str:
    """``'{prefix}/{name}_top{k}'``; ``name=None`` is the selected output's
    key (``'accuracy/top1'``), as MMPretrain's ``Accuracy`` names it;
    ``prefix=None`` leaves the prefix out (a metric's own key)."""
    key = f'{name}_top{k}' if name else f'top{k}'
    return f'{prefix}/{key}' if prefix else key


def parse_metric_key(key: str) -> Optional[Tuple[Optional[str], int]]:
    """``(name, k)`` of a key from :func:`metric_key` (``name`` None for
    the selected output); None for other keys."""
    match = _METRIC.fullmatch(key) if isinstance(key, str) else None
    if not match:
        return None
    return match.group('name'), int(match.group('k'))
