# Copyright (c) ffl_mm contributors.
"""KDCL: independent students, each on its own view of the image, taught
by a soft target made from all of them."""
from typing import Dict, List, Optional

import torch
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from ..utils.ensemble_teachers import TEACHERS
from .branch_features import BranchFeatures
from .multi_branch import MultiBranchClassifier


@MODELS.register_module()
class KDCLClassifier(MultiBranchClassifier):
    """Online Knowledge Distillation via Collaborative Learning (Guo et
    al., CVPR 2020): N independent students, each fed its own augmented
    view of the image, each trained with cross-entropy and distilled from
    one teacher made from every student's logits and the label; the
    teacher itself is not trained::

        views (B, N, 3, H, W) -> student i on view i -> z_i    (B, C)
        t = min_i (z_i - z_{i,y})      (teacher='min_logit', KDCL-MinLogit)
          | z_k, k = argmin_i CE(z_i, y) per image   (teacher='naive')
        loss = Σ_i CE(z_i) + distill_loss(z_1 .. z_N, t)

    ``distill_loss`` is typically ``TeacherKDLoss``:
    ``λ T² KL(softmax(t/T) ‖ softmax(z_i/T))`` per student, ``t``
    detached. The views come from MMPretrain's ``MultiView`` transform
    (``num_views`` = N) through :class:`MultiViewClsDataPreprocessor`; one
    view (validation, testing, or a plain pipeline) goes to every student.
    The prediction is the ensemble (the mean of the students' logits) by
    default; each student exports as a plain MMPretrain model.

    Args:
        teacher (str): ``'min_logit'`` (default, the paper's KDCL-MinLogit)
            or ``'naive'`` (KDCL-Naive).
        **kwargs: :class:`MultiBranchClassifier`'s arguments;
            ``shared_stages`` must be 0 (the students are independent
            networks) and there are no batch augmentations (the teacher
            needs one class index per image).
    """

    #: a training-only teacher, made by :meth:`distill_teacher`
    teacher_output = 'kdcl_teacher'

    def __init__(self, teacher: str = 'min_logit', **kwargs):
        name = type(self).__name__
        if teacher not in TEACHERS:
            raise ValueError(f'{name}: teacher={teacher!r}; choose one of '
                             f'{sorted(TEACHERS)}.')
        if kwargs.get('shared_stages'):
            raise ValueError(
                f"{name}: shared_stages={kwargs['shared_stages']!r}; KDCL's "
                'students are independent networks, each on its own view. '
                'Set shared_stages=0.')
        if (kwargs.get('train_cfg') or {}).get('augments'):
            raise ValueError(
                f'{name}: train_cfg.augments mixes labels, and the teacher '
                'needs one class index per image; remove the batch '
                'augmentations.')
        super().__init__(**kwargs)
        self.teacher = teacher

    def forward_features(self, inputs: torch.Tensor) -> BranchFeatures:
        """Student i's backbone outputs on view i of ``(B, N, 3, H, W)``,
        or every student's on ``(B, 3, H, W)``.

        Raises:
            ValueError: A number of views other than N.
        """
        if inputs.dim() != 5:
            return super().forward_features(inputs)
        views = inputs.unbind(dim=1)
        if len(views) != self.num_branches:
            raise ValueError(
                f'{type(self).__name__}: the batch has {len(views)} views of '
                f'each image for {self.num_branches} students; set the '
                f"train pipeline's MultiView num_views={self.num_branches}.")
        return BranchFeatures(
            views[0],
            [self._backbone_out(i, v) for i, v in enumerate(views)])

    def distill_teacher(self, branch_logits: List[torch.Tensor],
                        others: Dict[str, torch.Tensor],
                        data_samples: List[DataSample]
                        ) -> Optional[torch.Tensor]:
        """The teacher's logits ``(B, C)`` from the students' and the
        labels (:mod:`ffl_mm.models.utils.ensemble_teachers`)."""
        labels = torch.cat([s.gt_label for s in data_samples]).to(
            branch_logits[0].device)
        return TEACHERS[self.teacher](branch_logits, labels)
