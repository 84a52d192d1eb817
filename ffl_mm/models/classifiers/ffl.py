# Copyright (c) ffl_mm contributors.
"""FFL (and MFEF): the branches' maps fused into a classifier that teaches
them."""
from typing import Dict, List, Sequence, Union

import torch

from ffl_mm.registry import MODELS
from ..necks.fusion_pre_necks import FusionPreNecks
from ...utils import output_names as names
from . import branch_cfgs as bc
from . import channel_probe
from .branch_features import BranchFeatures
from .multi_branch import MultiBranchClassifier


@MODELS.register_module()
class FFLClassifier(MultiBranchClassifier):
    """Feature Fusion Learning (Kim et al., ICPR 2020) and, with
    ``fusion_pre_neck``, MFEF (Zou et al., ICANN 2022): the branches' maps
    are fused into a classifier, which is trained with its own
    cross-entropy and teaches the branches, while their mean teaches it.

    ::

        images -> [trunk] -> branch i -> f_i -> neck_i -> head_i -> z_i
        [f_1 .. f_N] -> [fusion_pre_neck per branch (MFEF)]
                     -> fusion_neck -> fusion_head -> z_f
        loss = Σ CE(z_i) + CE(z_f) + distill_loss(z_1 .. z_N, z_f)

    ``f_i`` is a map ``(B, C_i, H_i, W_i)``: branch i's backbone output at
    ``fusion_in_index`` (for ``VisionTransformer``:
    ``out_type='featmap'``). A missing ``in_channels`` of the fusion neck or
    head is filled in from the probe run; a given one that disagrees is an
    error.

    Args:
        fusion_neck (dict): Fuses the branch maps, e.g. ``FFLFusionNeck``.
        fusion_head (dict): Head of the fused classifier.
        fusion_pre_neck (dict | list[dict], optional): Necks that enhance
            each branch's map before fusion, built once per branch
            (:class:`FusionPreNecks`); MFEF uses
            ``[dict(type='MultiScaleNeck'), dict(type='DualAttentionNeck')]``.
            None: the maps go to the fusion neck as they are (FFL).
        fusion_pre_neck_with_cp (bool | str, optional): The memory switch
            of the ``fusion_pre_neck`` chains (:class:`FusionPreNecks`):
            True recomputes them in backward instead of keeping their
            activations, ``'selective'`` keeps their convolution results
            and recomputes the rest, False keeps everything. None
            (default): True where there is a ``fusion_pre_neck`` (the
            lowest peak memory at the same step time on the benchmark,
            docs/benchmarks.md).
        heads_on_enhanced (bool): Whether the branch necks/heads see the
            enhanced maps (True) or the raw backbone maps (False, default,
            so each branch stays a plain network that exports without the
            MFEF modules).
        **kwargs: :class:`MultiBranchClassifier`'s arguments; its
            ``distill_loss`` is typically ``MutualKDLoss`` and its
            ``test_cfg.predict`` defaults to ``'fused'``.
    """

    teacher_output = names.FUSED
    default_predict = names.FUSED
    with_fusion = True

    def __init__(self,
                 fusion_neck: dict,
                 fusion_head: dict,
                 fusion_pre_neck: Union[None, dict, Sequence[dict]] = None,
                 fusion_pre_neck_with_cp: Union[None, bool, str] = None,
                 heads_on_enhanced: bool = False,
                 **kwargs):
        if fusion_neck is None or fusion_head is None:
            raise ValueError(
                'FFLClassifier: fusion_neck and fusion_head are both '
                "required; without them use type='DMLClassifier' (DML) or "
                "type='MultiBranchClassifier' (cross-entropy only).")
        if fusion_pre_neck is None and heads_on_enhanced:
            raise ValueError('FFLClassifier: heads_on_enhanced=True needs '
                             'fusion_pre_neck.')
        if fusion_pre_neck is None and fusion_pre_neck_with_cp not in (
                None, False):
            raise ValueError(
                'FFLClassifier: fusion_pre_neck_with_cp='
                f'{fusion_pre_neck_with_cp!r} needs fusion_pre_neck (there '
                'is nothing to recompute).')
        if fusion_pre_neck_with_cp is None:
            fusion_pre_neck_with_cp = True
        bc.check_loss_weight(fusion_head, 'fusion_head', type(self).__name__)
        super().__init__(**kwargs)
        # the fused head predicts the branches' classes
        bc.check_num_classes(type(self).__name__,
                             [c['head'] for c in self._branch_cfgs],
                             fusion_head)
        probe = self.probe_branches(need_maps=True)
        sources = probe.error or '; '.join(
            probe.source(i) for i in range(self.num_branches))
        self.fusion_neck = bc.build(
            channel_probe.with_in_channels(
                fusion_neck, probe.map_channels or None, 'fusion_neck',
                sources))
        channel_probe.check_fusion_channels(self.fusion_neck, probe)
        fused = channel_probe.probe_fusion(self.fusion_neck, probe)
        self.fusion_head = bc.build(
            channel_probe.with_in_channels(
                fusion_head, fused.head_in(0), 'fusion_head', fused.error or
                f'the fusion neck gives {fused.outputs[0]}'))
        self.fusion_pre_necks = None
        if fusion_pre_neck is not None:
            self.fusion_pre_necks = FusionPreNecks(
                fusion_pre_neck, self.fusion_neck.in_channels,
                self.num_branches, with_cp=fusion_pre_neck_with_cp)
        self.heads_on_enhanced = heads_on_enhanced

    def teacher_head(self):
        return self.fusion_head

    def forward_features(self, inputs: torch.Tensor) -> BranchFeatures:
        """The backbone outputs and the maps to fuse: outputs
        ``fusion_in_index`` ``(B, C_i, H, W)``, enhanced by
        ``fusion_pre_neck`` where set (and given to the branch necks too
        with ``heads_on_enhanced``)."""
        features = self._backbone_features(inputs)
        index = self.fusion_in_index
        maps = [f[index] for f in features.feats]
        feats = features.feats
        if self.fusion_pre_necks is not None:
            maps = self.fusion_pre_necks(maps)
            if self.heads_on_enhanced:
                feats = [
                    f[:index % len(f)] + (e, ) + f[index % len(f) + 1:]
                    for f, e in zip(feats, maps)
                ]
        return features._replace(feats=feats, fusion_maps=maps)

    def forward_teacher(self, features: BranchFeatures,
                        branch_logits: List[torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
        """``ensemble`` (the mean of the branch logits) and ``fused``."""
        outputs = super().forward_teacher(features, branch_logits)
        outputs[names.FUSED] = self.fusion_head(
            self.fusion_neck(features.fusion_maps))
        return outputs

    def _extract(self, features: BranchFeatures, stage: str):
        """For ``fused``: the maps entering the fusion neck (enhanced where
        ``fusion_pre_neck`` is set), its output or the fused head's
        pre-logits; the branches and the ensemble as the base class."""
        if self.predict_mode != names.FUSED:
            return super()._extract(features, stage)
        if stage == 'backbone':
            return tuple(features.fusion_maps)
        fused = self.fusion_neck(features.fusion_maps)
        if stage == 'neck':
            return fused
        return (self.fusion_head.pre_logits(fused), )
