# Copyright (c) ffl_mm contributors.
"""N branches trained together in one MMPretrain classifier: the base of
every online-distillation method."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import ModuleList
from mmpretrain.models.classifiers import BaseClassifier
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from ...utils import output_names as names
from . import branch_cfgs as bc
from . import channel_probe
from .branch_features import BranchFeatures
from .distill_contract import check_distill_contract, check_distill_setup
from .head_loss import named_head_loss
from .predict_outputs import PredictOutputsMixin
from .student_export import StudentExportMixin
from .trunk_split import TrunkSplit


@MODELS.register_module()
class MultiBranchClassifier(PredictOutputsMixin, StudentExportMixin,
                            BaseClassifier):
    """N branches trained together, each with its own cross-entropy, and an
    optional distillation loss between them; the ensemble is the mean of
    the branch logits. Alone it is the methods' cross-entropy floor; each
    method is a subclass.

    ::

        images -> [trunk] -> branch i -> f_i -> neck_i -> head_i -> z_i
        ensemble = mean_i z_i
        loss = Σ CE(z_i) + distill_loss(z_1 .. z_N)

    A method adds its teacher in a subclass (:class:`FFLClassifier`: a
    fused classifier; :class:`ONEClassifier`: a gated ensemble;
    :class:`DMLClassifier`: peers; :class:`CLILRClassifier`: peers on a
    rescaled trunk; :class:`OKDDipClassifier`: peers' attention and a
    leader; :class:`KDCLClassifier`: a teacher made from the students)
    through its hooks:
    :meth:`forward_features` (what the backbones give),
    :meth:`forward_teacher` (the outputs besides the branches, by name),
    :meth:`teacher_head` and the class attributes (docs/architecture.md).
    A method's argument given here is a ``TypeError`` naming its class.

    ``f_i`` is branch i's backbone output at ``fusion_in_index`` (the last
    one by default). Branches may be any MMPretrain backbones, alike or
    not. A missing ``in_channels`` of a branch head is filled in from one
    run of the branches on a ``(2, 3, 64, 64)`` probe of zeros at build time
    (:mod:`.channel_probe`); a given one that disagrees is an error naming
    the branch.

    Args:
        backbone (dict | list[dict]): One backbone config, copied for every
            branch, or one config per branch (heterogeneous branches).
        num_branches (int, optional): N >= 2. Needed with a single
            backbone config; with a list it defaults to the list's length.
        shared_stages (int): k. With k >= 1 the stem and the first k stages
            are computed once and shared (FFL-S, ONE); every branch keeps its
            own later stages. Needs identical backbones of MMPretrain's
            ResNet family or ffl_mm's CIFARResNet/WideResNet. 0 (default)
            gives fully independent branches and works with any backbone.
        neck (dict | list[dict], optional): Per-branch neck. Defaults to
            ``GlobalAveragePooling``.
        head (dict | list[dict]): Per-branch head, an MMPretrain
            ``ClsHead`` (e.g. ``LinearClsHead`` with ``CrossEntropyLoss``).
        distill_loss (dict, optional): A method's distillation (a
            subclass's: ``PeerKDLoss`` between the branches, ``MutualKDLoss``
            or ``TeacherKDLoss`` from a teacher). The base class itself
            takes none: cross-entropy only.
        train_cfg (dict, optional): As ``ImageClassifier``'s: batch
            augmentations such as Mixup go in ``augments``.
        test_cfg (dict, optional): ``predict`` selects the output behind
            ``pred_score``/``pred_label``: one of :attr:`output_names`
            (``'ensemble'``, ``'branch{i}'``, and ``'fused'`` with a fused
            classifier); defaults to :attr:`default_predict`.
        fusion_in_index (int): Which backbone output (of several
            ``out_indices``) is a branch's map ``f_i``. Defaults to -1, the
            last. The branch necks get all outputs, as in
            ``ImageClassifier``.
        data_preprocessor (dict, optional): Defaults to
            ``ClsDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    #: The name of the teacher that ``distill_loss`` takes besides the
    #: branch logits: one of :attr:`output_names` (FFL's ``'fused'``,
    #: ONE's ``'ensemble'``), or a training-only teacher made by
    #: :meth:`distill_teacher` (KDCL's). None: the branches teach one
    #: another. Which head trains it is :meth:`teacher_head` (None: an
    #: untrained teacher, no loss of its own).
    teacher_output: Optional[str] = None
    #: The keys of :meth:`forward_targets`'s dict, which ``distill_loss``
    #: must declare it takes (its ``target_keys``): OKDDip's
    #: ``('peer_targets', )``.
    target_keys: Tuple[str, ...] = ()
    #: The methods that ``compile`` compiles (ffl_mm.engine.compile):
    #: together they run every module of training and testing.
    compile_targets: Tuple[str, ...] = ('_forward_all', )
    #: The output ``test_cfg.predict`` selects by default.
    default_predict: str = names.ENSEMBLE
    #: Whether the model has a fused classifier (output ``'fused'``); its
    #: fusion neck needs every branch's output at ``fusion_in_index`` to be
    #: a map ``(B, C, H, W)``, which the probe then checks first.
    with_fusion: bool = False
    # (need_maps, BranchProbe) of the build's probe run: probe_branches
    _build_probe = None

    def __init__(self,
                 backbone: Union[dict, Sequence[dict]],
                 num_branches: Optional[int] = None,
                 shared_stages: int = 0,
                 neck: Union[None, dict,
                             Sequence[dict]] = dict(
                                 type='GlobalAveragePooling'),
                 head: Union[None, dict, Sequence[dict]] = None,
                 distill_loss: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 fusion_in_index: int = -1,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **method_args):
        name = type(self).__name__
        bc.refuse_method_args(MultiBranchClassifier, type(self), method_args)
        data_preprocessor = data_preprocessor or {}
        if isinstance(data_preprocessor, dict):
            data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
            data_preprocessor.setdefault('batch_augments', train_cfg)
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            init_cfg=init_cfg, data_preprocessor=data_preprocessor)
        self.num_branches = num_branches = bc.check_args(
            name, backbone, num_branches, head)
        self.shared_stages = shared_stages
        self.fusion_in_index = fusion_in_index

        backbone_cfgs = bc.per_branch(backbone, num_branches, 'backbone',
                                     name)
        self.backbones = ModuleList([bc.build(cfg) for cfg in backbone_cfgs])
        self.trunk = None
        if shared_stages:
            self.trunk = TrunkSplit(self.backbones, shared_stages)
        neck_cfgs = bc.per_branch(neck, num_branches, 'neck', name)
        self.necks = ModuleList(
            [bc.build(cfg) or nn.Identity() for cfg in neck_cfgs])

        head_cfgs = bc.per_branch(head, num_branches, 'head', name)
        bc.check_num_classes(name, head_cfgs)
        probe = self.probe_branches(need_maps=self.with_fusion)
        head_cfgs = [
            channel_probe.with_in_channels(cfg, probe.head_in(i), 'head',
                                           probe.source(i), branch=i)
            for i, cfg in enumerate(head_cfgs)
        ]
        self.heads = ModuleList([bc.build(cfg) for cfg in head_cfgs])
        # each branch as a plain ImageClassifier would be configured (with
        # the inferred in_channels), for exporting a student
        self._branch_cfgs = [
            dict(backbone=b, neck=n, head=h)
            for b, n, h in zip(backbone_cfgs, neck_cfgs, head_cfgs)
        ]
        check_distill_setup(type(self), MultiBranchClassifier, distill_loss,
                            self.output_names)
        self.distill_loss = bc.build(distill_loss)
        if self.distill_loss is not None:
            check_distill_contract(type(self), self.distill_loss)
        self.test_cfg = bc.predict_mode(name, test_cfg, self.output_names,
                                        self.default_predict)
        self.predict_mode = self.test_cfg['predict']

    def probe_branches(self, need_maps: bool = False
                       ) -> channel_probe.BranchProbe:
        """What every branch gives on the probe (:mod:`.channel_probe`);
        ``need_maps``: the outputs at ``fusion_in_index`` must be maps.

        The branches run once per build: the base class probes them, and a
        subclass's call while it builds its teacher (fusion neck, gate,
        attention) gets the same result. Call it only while building."""
        cached = self._build_probe
        if cached is not None and (cached[0] or not need_maps):
            return cached[1]
        probe = channel_probe.probe_branches(
            self._backbone_features, self.backbones, self.necks,
            self.fusion_in_index, need_maps=need_maps)
        self._build_probe = (need_maps, probe)
        return probe

    @classmethod
    def output_roles(cls, num_branches: int) -> Dict[str, str]:
        """What an output is for, beyond its name, for results tables
        (``{'branch3': 'leader'}`` for OKDDip); here nothing."""
        return {}

    def __getattr__(self, name: str):
        if name == 'backbone':  # e.g. MMPretrain's vis_cam.py, vis_tsne.py
            # obj=None: no "Did you mean: 'backbones'?" after the message,
            # which Python would add from the attribute names
            raise AttributeError(bc.NO_SINGLE_BACKBONE, name=name, obj=None)
        return super().__getattr__(name)

    @property
    def output_names(self) -> List[str]:
        """Names of every output: ``branch{i}``, ``ensemble``, ``fused``."""
        return names.output_names(self.num_branches, self.with_fusion)

    def _backbone_features(self, inputs: torch.Tensor) -> BranchFeatures:
        """Every branch's backbone outputs (and the trunk's) for images
        ``(B, 3, H, W)``."""
        if self.trunk is not None:
            return BranchFeatures(inputs,
                                  *self.trunk.forward(self.backbones, inputs))
        return BranchFeatures(
            inputs,
            [self._backbone_out(i, inputs) for i in range(self.num_branches)])

    def _backbone_out(self, i: int,
                      inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Branch i's backbone outputs, as a tuple (independent branches)."""
        out = self.backbones[i](inputs)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, )

    def forward_features(self, inputs: torch.Tensor) -> BranchFeatures:
        """What the branch necks (and a method's teacher) take, for images
        ``(B, 3, H, W)``. A subclass that changes the branch features (MFEF's
        enhanced maps) overrides it."""
        return self._backbone_features(inputs)

    def forward_teacher(self, features: BranchFeatures,
                        branch_logits: List[torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
        """The outputs besides the branches, ``(B, num_classes)`` by name:
        here ``ensemble``, the mean of the branch logits."""
        return {names.ENSEMBLE: torch.stack(branch_logits).mean(dim=0)}

    def teacher_head(self) -> Optional[nn.Module]:
        """The head whose loss (an MMPretrain ``ClsHead``'s) trains the
        teacher, logged as ``loss_ce_<teacher_output>``; None (here): the
        teacher has no loss of its own (the mean ensemble, KDCL's)."""
        return None

    def forward_targets(self, pooled: List, branch_logits: List[torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
        """Training-only tensors that ``distill_loss`` takes besides the
        logits (OKDDip: each peer's attention-weighted target), by name,
        from the branch necks' outputs and logits ``(B, num_classes)``;
        here none."""
        return {}

    def _forward_all(self, inputs: torch.Tensor):
        """``(branch_logits, others, targets)``: N logits ``(B, C)``, the
        other outputs by name (:meth:`forward_teacher`) and, in training
        with a ``distill_loss``, :meth:`forward_targets`. Everything from
        images to the loss's inputs runs here: ``compile`` compiles this
        method (:attr:`compile_targets`)."""
        features = self.forward_features(inputs)
        pooled = [neck(f) for f, neck in zip(features.feats, self.necks)]
        branch_logits = [head(p) for p, head in zip(pooled, self.heads)]
        others = self.forward_teacher(features, branch_logits)
        targets = {}
        if self.training and self.distill_loss is not None:
            targets = self.forward_targets(pooled, branch_logits)
        return branch_logits, others, targets

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """MMPretrain's three modes: ``'tensor'`` (a dict of logits
        ``(B, num_classes)`` keyed by :attr:`output_names`), ``'loss'``
        (:meth:`loss`) and ``'predict'`` (:meth:`predict`)."""
        if mode == 'tensor':
            return self._named_logits(*self._forward_all(inputs)[:2])
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Cross-entropy of every classifier plus the distillation terms.

        Args:
            inputs (Tensor): ``(B, 3, H, W)``.
            data_samples (list[DataSample]): With ``gt_label`` (or
                ``gt_score`` after batch augmentation).

        Returns:
            dict[str, Tensor]: ``loss_ce_branch{i}``, the teacher's term
            (``loss_ce_fused``, ``loss_ce_ensemble``), ``loss_kd_*`` and
            ``kd_weight`` (logged only), depending on what is configured.
        """
        branch_logits, others, targets = self._forward_all(inputs)
        losses = {}
        for i, (head, logits) in enumerate(zip(self.heads, branch_logits)):
            losses.update(
                named_head_loss(head, logits, data_samples,
                                names.branch_name(i)))
        teacher = self.distill_teacher(branch_logits, others, data_samples)
        head = self.teacher_head()
        if head is not None and teacher is not None:
            losses.update(
                named_head_loss(head, teacher, data_samples,
                                self.teacher_output))
        if self.distill_loss is not None:
            losses.update(self.distill(branch_logits, teacher, targets))
        return losses

    def distill_teacher(self, branch_logits: List[torch.Tensor],
                        others: Dict[str, torch.Tensor],
                        data_samples: List[DataSample]
                        ) -> Optional[torch.Tensor]:
        """The teacher's logits ``(B, C)`` in training: here the output
        :attr:`teacher_output` (None without a teacher). A method whose
        teacher is not an output (KDCL's, made with the labels) makes it
        here from the branch logits, the other outputs
        (:meth:`forward_teacher`) and ``data_samples``."""
        if self.teacher_output is None:
            return None
        return others[self.teacher_output]

    def distill(self, branch_logits: List[torch.Tensor],
                teacher: Optional[torch.Tensor],
                targets: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The distillation terms.

        Args:
            branch_logits (list[Tensor]): N logits ``(B, C)``.
            teacher (Tensor, optional): :meth:`distill_teacher`'s logits
                ``(B, C)``; None when :attr:`teacher_output` is None.
            targets (dict[str, Tensor]): :meth:`forward_targets`'s, keyed
                by :attr:`target_keys`; unused here.

        Returns:
            dict[str, Tensor]: Terms whose key contains ``'loss'`` are
            summed into the training loss by ``parse_losses`` (name them
            ``loss_kd_<output>``); other keys (``kd_weight``) are only
            logged.
        """
        return self.distill_loss(branch_logits, teacher)
