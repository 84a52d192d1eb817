# Copyright (c) ffl_mm contributors.
"""Several branches, a fusion module and mutual distillation in one
MMPretrain classifier."""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import ModuleList
from mmpretrain.models.classifiers import BaseClassifier
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from ..necks.fusion_pre_necks import FusionPreNecks
from ..utils import TrunkSplit
from ..utils import branch_cfgs as bc
from ..utils import channel_probe as cp
from ..utils import output_names as names

ConfigType = Union[dict, nn.Module]


@MODELS.register_module()
class MultiBranchClassifier(BaseClassifier):
    """N branches trained together: with a fused classifier (FFL, MFEF),
    with a gated ensemble (ONE), or as peers (DML).

    ::

        images -> [trunk] -> branch i -> f_i -> neck_i -> head_i -> z_i
        [f_1 .. f_N] -> fusion_neck -> fusion_head -> z_f       (FFL, MFEF)
        (trunk map, z_1 .. z_N) -> ensemble_head -> z_e          (ONE)
        loss = Σ CE(z_i) + CE(z_f or z_e) + distill_loss(z_1..z_N, z_f/z_e)

    DML is ``distill_loss=dict(type='PeerKDLoss')`` with neither a fusion
    module nor an ensemble head; without an ensemble head, the ensemble
    output is the mean of the branch logits.

    ``f_i`` is branch i's backbone output at ``fusion_in_index`` (the last
    one by default), a map ``(B, C_i, H_i, W_i)``. Branches may be any
    MMPretrain backbones, alike or not, whose output is a map (for
    ``VisionTransformer``: ``out_type='featmap'``).

    Channels are inferred: at build time every branch runs once on a
    ``(2, 3, 64, 64)`` probe of zeros (:mod:`..utils.channel_probe`), and a
    missing ``in_channels`` of a branch head, of the fusion neck or of the
    fusion head is filled in from what the modules actually give. A given
    ``in_channels`` that disagrees is an error naming the branch, what it
    gives and what the config asks for.

    Args:
        backbone (dict | list[dict]): One backbone config, copied for every
            branch, or one config per branch (heterogeneous branches).
        num_branches (int, optional): N >= 2. Needed with a single
            backbone config; with a list it defaults to the list's length.
        shared_stages (int): k. With k >= 1 the stem and the first k stages
            are computed once and shared (FFL-S); every branch keeps its
            own later stages. Needs identical backbones of MMPretrain's
            ResNet family or ffl_mm's CIFARResNet/WideResNet. 0 (default)
            gives fully independent branches and works with any backbone.
        neck (dict | list[dict], optional): Per-branch neck. Defaults to
            ``GlobalAveragePooling``.
        head (dict | list[dict]): Per-branch head, an MMPretrain
            ``ClsHead`` (e.g. ``LinearClsHead`` with ``CrossEntropyLoss``).
        fusion_pre_neck (dict | list[dict], optional): Necks that enhance
            each branch's map before fusion, built once per branch
            (:class:`FusionPreNecks`); MFEF uses
            ``[dict(type='MultiScaleNeck'), dict(type='DualAttentionNeck')]``.
            None: the maps go to the fusion neck as they are (FFL).
        fusion_pre_neck_with_cp (bool): Recompute the ``fusion_pre_neck``
            chains in backward instead of keeping their activations.
            Defaults to False.
        heads_on_enhanced (bool): Whether the branch necks/heads see the
            enhanced maps (True) or the raw backbone maps (False, default,
            so each branch stays a plain network that exports without the
            MFEF modules).
        fusion_neck (dict, optional): Fuses the branch maps, e.g.
            ``FFLFusionNeck``; None trains the branches with cross-entropy
            only (no fused classifier, no distillation).
        fusion_head (dict, optional): Head of the fused classifier; needed
            with ``fusion_neck``.
        distill_loss (dict, optional): Distillation between the branches
            and the teacher: ``MutualKDLoss`` (from the fused classifier,
            or from ONE's gated ensemble), ``PeerKDLoss`` (DML, between
            the branches). None: no KD.
        ensemble_head (dict, optional): A head over the branch logits that
            gives a trained ensemble and its cross-entropy term
            (``loss_ce_ensemble``): ONE's ``GatedEnsembleHead``, whose
            ``in_channels`` is filled in. Needs identical branches; not
            with a fusion module.
        branch_update (str): ``'together'`` (default): one backward and one
            optimizer step for the summed loss. ``'one_by_one'``: DML's
            algorithm; within an iteration each branch in turn is
            updated from its own terms, against its peers' current
            predictions (N + N(N-1)/2 branch forwards per iteration, see
            :meth:`train_step`).
            Needs independent branches, no fusion module or ensemble
            head, and a single process.
        train_cfg (dict, optional): As ``ImageClassifier``'s: batch
            augmentations such as Mixup go in ``augments``.
        test_cfg (dict, optional): ``predict`` selects the output behind
            ``pred_score``/``pred_label``: ``'fused'`` (default with a
            fusion neck), ``'ensemble'`` (mean of the branch logits,
            default without one) or ``'branch{i}'``.
        fusion_in_index (int): Which backbone output (of several
            ``out_indices``) is fused. Defaults to -1, the last. The branch
            necks get all outputs, as in ``ImageClassifier``.
        data_preprocessor (dict, optional): Defaults to
            ``ClsDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: Union[dict, Sequence[dict]],
                 num_branches: Optional[int] = None,
                 shared_stages: int = 0,
                 neck: Union[None, dict,
                             Sequence[dict]] = dict(
                                 type='GlobalAveragePooling'),
                 head: Union[None, dict, Sequence[dict]] = None,
                 fusion_neck: Optional[dict] = None,
                 fusion_head: Optional[dict] = None,
                 fusion_pre_neck: Union[None, dict, Sequence[dict]] = None,
                 fusion_pre_neck_with_cp: bool = False,
                 heads_on_enhanced: bool = False,
                 distill_loss: Optional[dict] = None,
                 ensemble_head: Optional[dict] = None,
                 branch_update: str = 'together',
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 fusion_in_index: int = -1,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        data_preprocessor = data_preprocessor or {}
        if isinstance(data_preprocessor, dict):
            data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
            data_preprocessor.setdefault('batch_augments', train_cfg)
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            init_cfg=init_cfg, data_preprocessor=data_preprocessor)
        self.num_branches = num_branches = bc.check_args(
            backbone, num_branches, head, fusion_neck, fusion_head,
            distill_loss, fusion_pre_neck, heads_on_enhanced,
            fusion_pre_neck_with_cp)
        self.shared_stages = shared_stages
        self.fusion_in_index = fusion_in_index

        backbone_cfgs = bc.per_branch(backbone, num_branches, 'backbone')
        self.backbones = ModuleList([bc.build(cfg) for cfg in backbone_cfgs])
        self.trunk = None
        if shared_stages:
            self.trunk = TrunkSplit(self.backbones, shared_stages)
        neck_cfgs = bc.per_branch(neck, num_branches, 'neck')
        self.necks = ModuleList(
            [bc.build(cfg) or nn.Identity() for cfg in neck_cfgs])

        head_cfgs = bc.per_branch(head, num_branches, 'head')
        bc.check_num_classes(head_cfgs, fusion_head)
        probe = cp.probe_branches(self.forward_backbones, self.backbones,
                                  self.necks, fusion_in_index,
                                  need_maps=fusion_neck is not None)
        head_cfgs = [
            cp.with_in_channels(cfg, probe.head_in(i), 'head',
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
        self.fusion_neck = self.fusion_head = self.fusion_pre_necks = None
        if fusion_neck is not None:
            self._build_fusion(fusion_neck, fusion_head, probe)
        if fusion_pre_neck is not None:
            self.fusion_pre_necks = FusionPreNecks(
                fusion_pre_neck, self.fusion_neck.in_channels, num_branches,
                with_cp=fusion_pre_neck_with_cp)
        self.heads_on_enhanced = heads_on_enhanced
        self.ensemble_head = None
        if ensemble_head is not None:
            self._build_ensemble_head(ensemble_head, backbone)
        self.distill_loss = bc.build(distill_loss)
        if getattr(self.distill_loss, 'needs_teacher', False) and \
                not self.with_fusion and self.ensemble_head is None:
            raise ValueError(
                f'MultiBranchClassifier: distill_loss '
                f'{type(self.distill_loss).__name__} teaches the branches '
                'from a teacher output; add fusion_neck and fusion_head '
                '(FFL) or ensemble_head (ONE), or use PeerKDLoss (DML).')
        self.branch_update = bc.check_branch_update(
            branch_update, shared_stages, self.with_fusion,
            self.ensemble_head is not None)

        self.test_cfg = bc.predict_mode(
            test_cfg, self.output_names,
            names.FUSED if self.with_fusion else names.ENSEMBLE)
        self.predict_mode = self.test_cfg['predict']

    def _build_fusion(self, fusion_neck: ConfigType, fusion_head: ConfigType,
                      probe: cp.BranchProbe) -> None:
        """The fusion neck and head, their channels inferred and checked."""
        sources = probe.error or '; '.join(
            probe.source(i) for i in range(self.num_branches))
        self.fusion_neck = bc.build(
            cp.with_in_channels(fusion_neck, probe.map_channels or None,
                                'fusion_neck', sources))
        cp.check_fusion_channels(self.fusion_neck, probe)
        fused = cp.probe_fusion(self.fusion_neck, probe)
        self.fusion_head = bc.build(
            cp.with_in_channels(
                fusion_head, fused.head_in(0), 'fusion_head', fused.error or
                f'the fusion neck gives {fused.outputs[0]}'))

    def _build_ensemble_head(self, ensemble_head: ConfigType,
                             backbone) -> None:
        """ONE's gated ensemble, its gate's input channels filled in."""
        if self.with_fusion:
            raise ValueError(
                'MultiBranchClassifier: ensemble_head (ONE) and fusion_neck '
                '(FFL) each give a teacher; use one of them.')
        if isinstance(backbone, (list, tuple)) and any(
                b != backbone[0] for b in backbone[1:]):
            raise ValueError(
                'MultiBranchClassifier: ensemble_head weighs the logits of '
                'identical branches (ONE); got different backbone configs. '
                'Use one backbone config with num_branches, or DML '
                '(PeerKDLoss without ensemble_head) for different '
                'branches.')
        if isinstance(ensemble_head, nn.Module):
            self.ensemble_head = ensemble_head
            return
        cfg = dict(ensemble_head)
        cfg.setdefault('num_branches', self.num_branches)
        gate_input = cfg.get('gate_input', 'trunk')
        if gate_input == 'trunk' and self.trunk is None:
            raise ValueError(
                "MultiBranchClassifier: ensemble_head gate_input='trunk' "
                'reads the shared stages; set shared_stages >= 1 or '
                "gate_input='input'.")
        if cfg.get('in_channels') is None:
            if gate_input == 'input':
                cfg['in_channels'] = 3
            else:
                with torch.no_grad():
                    was = self.training
                    self.eval()
                    shared = self.trunk.forward_shared(
                        self.backbones, torch.zeros(2, 3, 64, 64))
                    self.train(was)
                cfg['in_channels'] = shared.shape[1]
        if cfg['num_branches'] != self.num_branches:
            raise ValueError(
                f"MultiBranchClassifier: ensemble_head num_branches="
                f"{cfg['num_branches']} but the model has "
                f'{self.num_branches} branches; leave it out.')
        self.ensemble_head = bc.build(cfg)

    def __getattr__(self, name: str):
        if name == 'backbone':  # e.g. MMPretrain's vis_cam.py, vis_tsne.py
            raise AttributeError(bc.NO_SINGLE_BACKBONE)
        return super().__getattr__(name)

    @property
    def with_fusion(self) -> bool:
        return self.fusion_neck is not None

    @property
    def output_names(self) -> List[str]:
        """Names of every output: ``branch{i}``, ``ensemble``, ``fused``."""
        return names.output_names(self.num_branches, self.with_fusion)

    def branch_cfg(self, branch: int) -> Dict[str, Optional[ConfigType]]:
        """``backbone``, ``neck`` and ``head`` of branch ``branch`` as a
        plain ``ImageClassifier`` takes them (inferred channels filled
        in)."""
        return copy.deepcopy(self._branch_cfgs[branch])

    def branch_state_dict(self, branch: int) -> Dict[str, torch.Tensor]:
        """Branch ``branch`` with ``ImageClassifier``'s keys: ``backbone.*``
        (with a shared trunk, the trunk's modules and the branch's own
        stages), ``neck.*`` and ``head.*``; detached copies."""
        backbone = self.backbones[branch].state_dict() if self.trunk is None \
            else self.trunk.backbone_state_dict(self.backbones, branch)
        state = OrderedDict()
        for prefix, part in (('backbone.', backbone),
                             ('neck.', self.necks[branch].state_dict()),
                             ('head.', self.heads[branch].state_dict())):
            for key, value in part.items():
                state[prefix + key] = value.detach().clone()
        return state

    def forward_backbones(
            self, inputs: torch.Tensor,
            shared: Optional[list] = None) -> List[Tuple[torch.Tensor, ...]]:
        """Every branch's backbone outputs for images ``(B, 3, H, W)``: N
        tuples, as each plain backbone returns them. ``shared`` (with a
        shared trunk) receives the trunk's output."""
        if self.trunk is not None:
            return self.trunk.forward(self.backbones, inputs, shared=shared)
        return [self._backbone_out(i, inputs)
                for i in range(self.num_branches)]

    def _backbone_out(self, i: int,
                      inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Branch i's backbone outputs, as a tuple (independent branches)."""
        out = self.backbones[i](inputs)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, )

    def forward_maps(self, inputs: torch.Tensor, gate: Optional[list] = None):
        """Backbone outputs for the branch heads and the maps to fuse.

        Args:
            inputs (Tensor): ``(B, 3, H, W)``.
            gate (list, optional): Receives the ensemble head's gate input
                (the last shared stage's output ``(B, C, H', W')``, or the
                images), when there is an ensemble head.

        Returns:
            tuple: ``(feats, fusion_inputs)``: N tuples of maps for the
            branch necks, and N maps ``(B, C_i, H, W)`` for the fusion
            neck (outputs ``fusion_in_index``, enhanced by
            ``fusion_pre_neck`` if set).
        """
        trunk_gate = None
        if gate is not None and self.ensemble_head is not None:
            if self.ensemble_head.gate_input == 'input':
                gate.append(inputs)
            else:
                trunk_gate = gate
        feats = self.forward_backbones(inputs, shared=trunk_gate)
        index = self.fusion_in_index
        maps = [f[index] for f in feats]
        if self.fusion_pre_necks is None:
            return feats, maps
        enhanced = self.fusion_pre_necks(maps)
        if self.heads_on_enhanced:
            feats = [
                f[:index % len(f)] + (e, ) + f[index % len(f) + 1:]
                for f, e in zip(feats, enhanced)
            ]
        return feats, enhanced

    def _forward_all(self, inputs: torch.Tensor):
        """Branch logits, fused logits (None without fusion) and the
        ensemble's logits (the gated ensemble with an ensemble head, else
        the mean of the branch logits)."""
        gate = []
        feats, fusion_inputs = self.forward_maps(inputs, gate)
        branch_logits = [
            head(neck(f))
            for f, neck, head in zip(feats, self.necks, self.heads)
        ]
        fused_logits = None
        if self.with_fusion:
            fused_logits = self.fusion_head(self.fusion_neck(fusion_inputs))
        if self.ensemble_head is not None:
            ensemble = self.ensemble_head(gate[0], branch_logits)
        else:
            ensemble = torch.stack(branch_logits).mean(dim=0)
        return branch_logits, fused_logits, ensemble

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """MMPretrain's three modes: ``'tensor'`` (a dict of logits
        ``(B, num_classes)`` keyed by :attr:`output_names`), ``'loss'``
        (:meth:`loss`) and ``'predict'`` (:meth:`predict`)."""
        if mode == 'tensor':
            return self._named_logits(*self._forward_all(inputs))
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def _named_logits(self, branch_logits, fused_logits, ensemble_logits):
        logits = {names.branch_name(i): z for i, z in enumerate(branch_logits)}
        logits[names.ENSEMBLE] = ensemble_logits
        if fused_logits is not None:
            logits[names.FUSED] = fused_logits
        return logits

    def extract_feat(self,
                     inputs: torch.Tensor,
                     stage: str = 'neck') -> Tuple[torch.Tensor, ...]:
        """Features of the output that ``test_cfg.predict`` selects, at
        ``stage`` ``'backbone'``, ``'neck'`` or ``'pre_logits'`` (as
        ``ImageClassifier.extract_feat``): for ``branch{i}`` that branch's;
        for ``fused`` the maps entering the fusion neck (enhanced where
        ``fusion_pre_neck`` is set), its output or the fused head's
        pre-logits; for ``ensemble`` a tuple of each branch's (last)
        feature.

        Returns:
            tuple[Tensor]: As described above.
        """
        if stage not in ('backbone', 'neck', 'pre_logits'):
            raise ValueError(f'Invalid output stage "{stage}", please choose '
                             'from "backbone", "neck" and "pre_logits"')
        maps, fusion_inputs = self.forward_maps(inputs)
        mode = self.predict_mode
        if mode == names.FUSED:
            if stage == 'backbone':
                return tuple(fusion_inputs)
            fused = self.fusion_neck(fusion_inputs)
            if stage == 'neck':
                return fused
            return (self.fusion_head.pre_logits(fused), )

        def branch_feat(i):
            if stage == 'backbone':
                return maps[i]
            feats = self.necks[i](maps[i])
            if stage == 'neck':
                return feats
            return (self.heads[i].pre_logits(feats), )

        if mode == names.ENSEMBLE:
            return tuple(
                branch_feat(i)[-1] for i in range(self.num_branches))
        return branch_feat(names.branch_index(mode))

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Cross-entropy of every classifier plus the distillation terms.

        Args:
            inputs (Tensor): ``(B, 3, H, W)``.
            data_samples (list[DataSample]): With ``gt_label`` (or
                ``gt_score`` after batch augmentation).

        Returns:
            dict[str, Tensor]: ``loss_ce_branch{i}``, ``loss_ce_fused``
            (FFL/MFEF) or ``loss_ce_ensemble`` (ONE), ``loss_kd_branch{i}``,
            ``loss_kd_fused`` and ``kd_weight`` (logged only), depending on
            what is configured.
        """
        self._check_update_path()
        branch_logits, fused_logits, ensemble = self._forward_all(inputs)
        losses = {}
        for i, (head, logits) in enumerate(zip(self.heads, branch_logits)):
            losses.update(
                self._head_loss(head, logits, data_samples,
                                names.branch_name(i)))
        if self.with_fusion:
            losses.update(
                self._head_loss(self.fusion_head, fused_logits, data_samples,
                                names.FUSED))
        teacher = fused_logits
        if self.ensemble_head is not None:
            losses.update(
                self._head_loss(self.ensemble_head, ensemble, data_samples,
                                names.ENSEMBLE))
            teacher = ensemble
        if self.distill_loss is not None:
            losses.update(self.distill_loss(branch_logits, teacher))
        return losses

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        """MMEngine's step; with ``branch_update='one_by_one'`` (DML's
        algorithm) one update per branch, in turn.

        Every branch is forwarded once with gradients. Then for each branch
        i: the branches updated before it in this iteration are forwarded
        again without gradients (their current predictions are branch i's
        targets; the others have not moved), branch i's terms are
        back-propagated (the targets are detached: only branch i gets
        gradients) and the optimizer steps (parameters without a gradient
        are left alone). N + N(N-1)/2 branch forwards per iteration; branch
        j's BN statistics see the batch N - j times.

        Returns:
            dict[str, Tensor]: The log: each branch's terms from its own
            update, ``loss`` their sum.
        """
        if self.branch_update == 'together':
            return super().train_step(data, optim_wrapper)
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            inputs, samples = data['inputs'], data['data_samples']
            logits = [self._branch_logits(i, inputs)
                      for i in range(self.num_branches)]
        log_vars = OrderedDict()
        total = 0.
        for i in range(self.num_branches):
            targets = list(logits)
            if i:
                with torch.no_grad(), optim_wrapper.optim_context(self):
                    targets[:i] = [self._branch_logits(j, inputs)
                                   for j in range(i)]
            with optim_wrapper.optim_context(self):
                name = names.branch_name(i)
                own = self._head_loss(self.heads[i], logits[i], samples, name)
                if self.distill_loss is not None:
                    distill = self.distill_loss(targets[:i] + [logits[i]] +
                                                targets[i + 1:], None)
                    own[f'loss_kd_{name}'] = distill[f'loss_kd_{name}']
                    own['kd_weight'] = distill['kd_weight']
            loss, logs = self.parse_losses(own)
            optim_wrapper.update_params(loss)
            total += float(logs.pop('loss'))
            log_vars.update(logs)
        log_vars['loss'] = torch.tensor(total)
        log_vars.move_to_end('loss', last=False)
        return log_vars

    def _branch_logits(self, i: int, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` of branch i on its own (independent branches,
        no fusion: ``branch_update='one_by_one'``)."""
        return self.heads[i](self.necks[i](self._backbone_out(i, inputs)))

    def _check_update_path(self) -> None:
        """``branch_update='one_by_one'`` works through :meth:`train_step`;
        MMEngine's DDP wrapper calls ``forward`` itself and would update
        the branches together without a word."""
        if self.branch_update == 'together':
            return
        if torch.distributed.is_available() and \
                torch.distributed.is_initialized() and self.training:
            raise RuntimeError(
                "MultiBranchClassifier: branch_update='one_by_one' updates "
                'the branches in its own train_step, which distributed '
                "training (MMEngine's DDP wrapper) does not call; use "
                "branch_update='together' for distributed training.")

    @staticmethod
    def _head_loss(head, logits, data_samples, name):
        """The head's own loss (MMPretrain's ``ClsHead._get_loss``) on
        logits computed once, with the terms renamed for the log."""
        named = {}
        for key, value in head._get_loss(logits, data_samples).items():
            key = 'loss_ce' if key == 'loss' else key
            named[f'{key}_{name}'] = value
        return named

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
        logits = self._named_logits(*self._forward_all(inputs))
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
