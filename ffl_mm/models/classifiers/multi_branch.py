# Copyright (c) ffl_mm contributors.
"""Several branches, a fusion module and mutual distillation in one
MMPretrain classifier."""
import contextlib
import copy
import inspect
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import ModuleList, Sequential
from mmpretrain.models.classifiers import BaseClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..utils import TrunkSplit, recompute_in_backward

ConfigType = Union[dict, nn.Module]


def _per_branch(cfg: Union[None, dict, Sequence[dict]], num_branches: int,
                name: str) -> List[Optional[dict]]:
    """One config for each branch: a single config is deep-copied."""
    if cfg is None or isinstance(cfg, dict):
        return [copy.deepcopy(cfg) for _ in range(num_branches)]
    cfg = list(cfg)
    if len(cfg) != num_branches:
        raise ValueError(
            f'MultiBranchClassifier: {name} is a list of {len(cfg)} '
            f'configs but there are {num_branches} branches; give one '
            'config (shared) or one per branch.')
    return [copy.deepcopy(c) for c in cfg]


def _build(cfg: Optional[ConfigType]) -> Optional[nn.Module]:
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    return MODELS.build(cfg)


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module):
    """Eval mode and no gradient for ``modules``; every submodule's
    ``training`` flag is restored as it was afterwards."""
    flags = [(m, m.training) for top in modules for m in top.modules()]
    try:
        for top in modules:
            top.eval()
        with torch.no_grad():
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def _accepts_in_channels(cfg: dict) -> bool:
    """Whether the registered class of ``cfg`` takes ``in_channels``."""
    cls = cfg.get('type')
    if isinstance(cls, str):
        cls = MODELS.get(cls)
    if cls is None:
        return False
    try:
        return 'in_channels' in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def _check_num_classes(head_cfgs: Sequence[Optional[dict]],
                       fusion_head: Optional[dict]) -> None:
    """Every head must predict the same classes."""
    named = [(f'head of branch {i}', cfg.get('num_classes'))
             for i, cfg in enumerate(head_cfgs) if isinstance(cfg, dict)]
    if isinstance(fusion_head, dict):
        named.append(('fusion_head', fusion_head.get('num_classes')))
    named = [(name, n) for name, n in named if n is not None]
    if len({n for _, n in named}) > 1:
        raise ValueError(
            'MultiBranchClassifier: every head must predict the same '
            'classes, got ' +
            ', '.join(f'{name}: num_classes={n}' for name, n in named) +
            '; set one num_classes.')


def _with_in_channels(cfg: Optional[ConfigType], probe: dict, key: str,
                      branch: Optional[int], name: str):
    """``cfg`` with ``in_channels`` filled in from the probe, or checked
    against it.

    Args:
        cfg: A head/neck config (a built module is returned as is).
        probe (dict): :meth:`MultiBranchClassifier._probe`'s result.
        key (str): ``'features'`` (per-branch head input), ``'maps'`` (the
            maps to fuse, filled in as a list) or ``'fused'``.
        branch (int, optional): The branch, for per-branch keys.
        name (str): The config key, for messages.
    """
    if cfg is None or isinstance(cfg, nn.Module) or \
            not _accepts_in_channels(cfg):
        return cfg
    cfg = copy.deepcopy(cfg)
    where = name if branch is None else f'{name} of branch {branch}'
    given = cfg.get('in_channels')
    found = probe.get(key)
    if found is not None and branch is not None:
        found = found[branch]
    if found is None:
        if given is None:
            reason = probe.get('error') or 'its input is not a tensor'
            raise ValueError(
                f'MultiBranchClassifier: {where} has no in_channels and it '
                f'could not be inferred ({reason}); set {name}.in_channels.')
        return cfg
    if given is None:
        cfg['in_channels'] = found
    elif isinstance(given, int) and isinstance(found, int) and \
            given != found:
        source = ('the fusion neck gives' if branch is None else
                  f"branch {branch}'s backbone and neck give")
        raise ValueError(
            f'MultiBranchClassifier: {where} has in_channels={given} but '
            f'{source} {found} features; set in_channels={found} or leave '
            'it out to have it inferred.')
    return cfg


def _check_fusion_channels(fusion_neck: nn.Module, probe: dict) -> None:
    """The fusion neck's ``in_channels`` must match the branch maps."""
    expected = getattr(fusion_neck, 'in_channels', None)
    found = probe.get('maps')
    if found is None or not isinstance(expected, (list, tuple)):
        return
    if len(expected) != len(found):
        raise ValueError(
            f'MultiBranchClassifier: fusion_neck.in_channels={list(expected)}'
            f' is for {len(expected)} branches, the model has {len(found)}.')
    for i, (want, got) in enumerate(zip(expected, found)):
        if want != got:
            raise ValueError(
                f'MultiBranchClassifier: fusion_neck.in_channels='
                f'{list(expected)} but branch {i} gives maps of {got} '
                f'channels (all branches: {found}); set '
                f'fusion_neck.in_channels={found} or leave it out to have '
                'it inferred.')


@MODELS.register_module()
class MultiBranchClassifier(BaseClassifier):
    """N branches trained together with a fused classifier (FFL, MFEF).

    ::

        images -> [trunk] -> branch i -> f_i -> neck_i -> head_i -> z_i
        [f_1 .. f_N] -> fusion_neck -> fusion_head -> z_f
        loss = Σ CE(z_i) + CE(z_f) + distill_loss(z_1..z_N, z_f)

    ``f_i`` is branch i's backbone output at ``fusion_in_index`` (the last
    one by default), a map ``(B, C_i, H_i, W_i)``. Branches may be any
    MMPretrain backbones, alike or not. Backbones whose output is a vector
    or a token sequence cannot be fused as they are: for
    ``VisionTransformer`` set ``out_type='featmap'`` (patch tokens as a
    ``(B, C, H/p, W/p)`` map), otherwise a clear error names the branch.

    Channels are inferred: at build time every branch runs once on a
    ``(2, 3, 64, 64)`` probe of zeros (eval mode, no gradient, no random
    numbers drawn), and a missing ``in_channels`` of a branch head, of the
    fusion neck or of the fusion head is filled in from what the modules
    actually give. A given ``in_channels`` that disagrees is an error naming
    the branch and both numbers.

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
            each branch's last map before fusion, built once per branch and
            applied in order; MFEF uses ``[dict(type='MultiScaleNeck'),
            dict(type='DualAttentionNeck')]``. A missing ``in_channels`` is
            taken from ``fusion_neck.in_channels`` of that branch. None:
            the maps go to the fusion neck as they are (FFL).
        fusion_pre_neck_with_cp (bool): Recompute the ``fusion_pre_neck``
            chain in backward instead of keeping its activations (activation
            checkpointing; BatchNorm statistics still move once a step, see
            :func:`recompute_in_backward`). Saves memory, costs one more
            forward pass of the chain. Defaults to False.
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
            and the fused classifier, e.g. ``MutualKDLoss``. None: no KD.
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

    #: Side of the build-time probe that infers and checks channels.
    probe_size = 64

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

        if isinstance(backbone, (list, tuple)):
            if num_branches is not None and num_branches != len(backbone):
                raise ValueError(
                    f'MultiBranchClassifier: num_branches={num_branches} '
                    f'but {len(backbone)} backbone configs; give one config '
                    'per branch or drop num_branches.')
            num_branches = len(backbone)
        elif num_branches is None:
            raise ValueError(
                'MultiBranchClassifier: set num_branches (>= 2) or give a '
                'list of backbone configs.')
        if not isinstance(num_branches, int) or num_branches < 2:
            raise ValueError(
                f'MultiBranchClassifier: num_branches={num_branches!r}; '
                'mutual learning needs at least 2 branches.')
        if head is None:
            raise ValueError('MultiBranchClassifier: a branch `head` config '
                             'is required (e.g. LinearClsHead).')
        self.num_branches = num_branches
        self.shared_stages = shared_stages

        backbone_cfgs = _per_branch(backbone, num_branches, 'backbone')
        self.backbones = ModuleList([_build(cfg) for cfg in backbone_cfgs])
        self.trunk = None
        if shared_stages:
            self.trunk = TrunkSplit(self.backbones, shared_stages)
        neck_cfgs = _per_branch(neck, num_branches, 'neck')
        self.necks = ModuleList(
            [_build(cfg) or nn.Identity() for cfg in neck_cfgs])
        self.fusion_in_index = fusion_in_index

        if (fusion_neck is None) != (fusion_head is None):
            raise ValueError(
                'MultiBranchClassifier: fusion_neck and fusion_head go '
                'together; give both (FFL/MFEF) or neither (cross-entropy '
                'only).')
        if distill_loss is not None and fusion_neck is None:
            raise ValueError(
                'MultiBranchClassifier: distill_loss needs the fused '
                'classifier; add fusion_neck and fusion_head.')
        head_cfgs = _per_branch(head, num_branches, 'head')
        _check_num_classes(head_cfgs, fusion_head)
        probe = self._probe(with_fusion=fusion_neck is not None)
        head_cfgs = [
            _with_in_channels(cfg, probe, 'features', i, 'head')
            for i, cfg in enumerate(head_cfgs)
        ]
        self.heads = ModuleList([_build(cfg) for cfg in head_cfgs])
        # each branch as a plain ImageClassifier would be configured (with
        # the inferred in_channels), for exporting a student
        self.branch_cfgs = [
            dict(backbone=b, neck=n, head=h)
            for b, n, h in zip(backbone_cfgs, neck_cfgs, head_cfgs)
        ]
        self.fusion_neck = None
        self.fusion_head = None
        if fusion_neck is not None:
            self.fusion_neck = _build(
                _with_in_channels(fusion_neck, probe, 'maps', None,
                                  'fusion_neck'))
            _check_fusion_channels(self.fusion_neck, probe)
            self.fusion_head = _build(
                _with_in_channels(fusion_head,
                                  self._probe_fusion(probe), 'fused', None,
                                  'fusion_head'))
        self.distill_loss = _build(distill_loss)
        self.heads_on_enhanced = heads_on_enhanced
        self.fusion_pre_necks = None
        if fusion_pre_neck is not None:
            if fusion_neck is None:
                raise ValueError('MultiBranchClassifier: fusion_pre_neck '
                                 'enhances maps for the fusion neck; add '
                                 'fusion_neck and fusion_head.')
            self.fusion_pre_necks = ModuleList([
                self._build_pre_neck(fusion_pre_neck, i)
                for i in range(num_branches)
            ])
        elif heads_on_enhanced:
            raise ValueError('MultiBranchClassifier: heads_on_enhanced=True '
                             'needs fusion_pre_neck.')
        elif fusion_pre_neck_with_cp:
            raise ValueError('MultiBranchClassifier: '
                             'fusion_pre_neck_with_cp=True needs '
                             'fusion_pre_neck (there is nothing to '
                             'recompute).')
        self.fusion_pre_neck_with_cp = bool(fusion_pre_neck_with_cp)

        self.test_cfg = dict(test_cfg or {})
        unknown = set(self.test_cfg) - {'predict'}
        if unknown:
            raise ValueError(
                f'MultiBranchClassifier: unknown test_cfg key(s) '
                f'{sorted(unknown)}; the only key is predict='
                f"'fused'|'ensemble'|'branch<i>'.")
        default = 'fused' if self.with_fusion else 'ensemble'
        self.predict_mode = self.test_cfg.setdefault('predict', default)
        self._check_predict_mode(self.predict_mode)

    # ------------------------------------------------------------------
    # build-time probe
    # ------------------------------------------------------------------
    def _probe(self, with_fusion: bool) -> dict:
        """Run the branches once on zeros to learn their output shapes.

        Returns:
            dict: ``features`` (per branch, the channels of the neck output
            a head gets), ``maps`` (per branch, the channels of the map to
            fuse) and ``map_tensors``; or ``error`` (the exception) when
            the backbones cannot run on a ``probe_size`` input.

        Raises:
            ValueError: ``fusion_in_index`` out of range, or (with fusion)
                a branch output that is not a ``(B, C, H, W)`` map.
        """
        with _eval_mode(*self.backbones, *self.necks):
            return self._probe_in_eval(with_fusion)

    def _probe_in_eval(self, with_fusion: bool) -> dict:
        size = self.probe_size
        try:
            feats = self.forward_backbones(torch.zeros(2, 3, size, size))
        except Exception as error:  # a backbone that needs other inputs
            return dict(error=f'running the branches on a (2, 3, {size}, '
                        f'{size}) probe failed: {error!r}')
        index = self.fusion_in_index
        for i, f in enumerate(feats):
            if not -len(f) <= index < len(f):
                raise ValueError(
                    f'MultiBranchClassifier: fusion_in_index={index} but '
                    f"branch {i}'s backbone gives {len(f)} output(s); use "
                    f'-1 (the last) or an index below {len(f)}.')
        maps = [f[index] for f in feats]
        if with_fusion:
            for i, x in enumerate(maps):
                self._check_map(i, x)
        try:
            features = []
            for f, neck in zip(feats, self.necks):
                out = neck(f)
                out = out[-1] if isinstance(out, (list, tuple)) else out
                features.append(
                    int(out.shape[1]) if torch.is_tensor(out) and
                    out.dim() >= 2 else None)
        except Exception as error:
            features = None
        probe = dict(
            features=features,
            maps=[int(x.shape[1]) if x.dim() == 4 else None for x in maps],
            map_tensors=maps)
        if features is None:
            probe['error'] = f'the branch necks failed on the probe: {error!r}'
        return probe

    def _check_map(self, branch: int, x) -> None:
        """Only ``(B, C, H, W)`` maps can be fused."""
        if torch.is_tensor(x) and x.dim() == 4:
            return
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        backbone = self.backbones[branch]
        raise ValueError(
            f"MultiBranchClassifier: branch {branch}'s backbone "
            f'({type(backbone).__name__}) gives {shape} to fuse (for a '
            f'{self.probe_size} px probe); the fusion neck needs a map '
            "(B, C, H, W). For VisionTransformer-like backbones set "
            "out_type='featmap' (patch tokens as a map), for ConvNeXt "
            'gap_before_final_norm=False; otherwise choose a map output '
            'with out_indices / fusion_in_index.')

    def _probe_fusion(self, probe: dict) -> dict:
        """Channels of the fusion neck's output on the probe maps."""
        if 'error' in probe:
            return probe
        try:
            with _eval_mode(self.fusion_neck):
                out = self.fusion_neck(probe['map_tensors'])
        except Exception as error:
            return dict(error=f'running the fusion neck on the probe maps '
                        f'failed: {error!r}')
        out = out[-1] if isinstance(out, (list, tuple)) else out
        return dict(fused=int(out.shape[1]))

    def _build_pre_neck(self, cfg, branch: int) -> nn.Module:
        """Branch ``branch``'s chain of enhancement necks."""
        cfgs = [cfg] if isinstance(cfg, dict) else list(cfg)
        channels = getattr(self.fusion_neck, 'in_channels', None)
        layers = []
        for one in copy.deepcopy(cfgs):
            if 'in_channels' not in one and channels is not None:
                one['in_channels'] = channels[branch]
            layers.append(_build(one))
        return Sequential(*layers)

    @property
    def with_fusion(self) -> bool:
        return self.fusion_neck is not None

    @property
    def output_names(self) -> List[str]:
        """Names of every output: ``branch{i}``, ``ensemble``, ``fused``."""
        names = [f'branch{i}' for i in range(self.num_branches)]
        names.append('ensemble')
        if self.with_fusion:
            names.append('fused')
        return names

    def _check_predict_mode(self, mode: str) -> None:
        if mode not in self.output_names:
            raise ValueError(
                f"MultiBranchClassifier: unknown test_cfg predict={mode!r}; "
                f"choose one of {self.output_names}.")

    # ------------------------------------------------------------------
    # forward passes
    # ------------------------------------------------------------------
    def forward_backbones(
            self, inputs: torch.Tensor) -> List[Tuple[torch.Tensor, ...]]:
        """Every branch's backbone outputs.

        Args:
            inputs (Tensor): ``(B, 3, H, W)``.

        Returns:
            list[tuple[Tensor]]: N tuples, as each plain backbone returns.
        """
        if self.trunk is not None:
            return self.trunk.forward(self.backbones, inputs)
        outs = []
        for backbone in self.backbones:
            out = backbone(inputs)
            outs.append(tuple(out) if isinstance(out, (list, tuple)) else
                        (out, ))
        return outs

    def forward_maps(self, inputs: torch.Tensor):
        """Backbone outputs for the branch heads and the maps to fuse.

        Returns:
            tuple: ``(feats, fusion_inputs)``: N tuples of maps for the
            branch necks, and N maps ``(B, C_i, H, W)`` for the fusion
            neck (outputs ``fusion_in_index``, enhanced by
            ``fusion_pre_neck`` if set).
        """
        feats = self.forward_backbones(inputs)
        index = self.fusion_in_index
        maps = [f[index] for f in feats]
        if self.fusion_pre_necks is None:
            return feats, maps
        enhance = recompute_in_backward if self.fusion_pre_neck_with_cp \
            else nn.Module.__call__
        enhanced = [
            enhance(pre, x) for pre, x in zip(self.fusion_pre_necks, maps)
        ]
        if self.heads_on_enhanced:
            feats = [
                f[:index % len(f)] + (e, ) + f[index % len(f) + 1:]
                for f, e in zip(feats, enhanced)
            ]
        return feats, enhanced

    def _forward_all(self, inputs: torch.Tensor):
        """Branch logits and fused logits (None without fusion)."""
        feats, fusion_inputs = self.forward_maps(inputs)
        branch_logits = [
            head(neck(f))
            for f, neck, head in zip(feats, self.necks, self.heads)
        ]
        fused_logits = None
        if self.with_fusion:
            fused_logits = self.fusion_head(self.fusion_neck(fusion_inputs))
        return branch_logits, fused_logits

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """MMPretrain's three modes.

        * ``'tensor'``: a dict of logits ``(B, num_classes)``:
          ``branch{i}``, ``ensemble`` and (with fusion) ``fused``.
        * ``'loss'``: a dict of named losses (see :meth:`loss`).
        * ``'predict'``: a list of :obj:`DataSample` (see :meth:`predict`).
        """
        if mode == 'tensor':
            branch_logits, fused_logits = self._forward_all(inputs)
            return self._named_logits(branch_logits, fused_logits)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def _named_logits(self, branch_logits, fused_logits):
        logits = {f'branch{i}': z for i, z in enumerate(branch_logits)}
        logits['ensemble'] = torch.stack(branch_logits).mean(dim=0)
        if fused_logits is not None:
            logits['fused'] = fused_logits
        return logits

    def extract_feat(self,
                     inputs: torch.Tensor,
                     stage: str = 'neck') -> Tuple[torch.Tensor, ...]:
        """Features of the output that ``test_cfg.predict`` selects.

        Follows ``ImageClassifier.extract_feat``: ``stage`` is
        ``'backbone'``, ``'neck'`` or ``'pre_logits'``.

        * ``branch{i}``: that branch's backbone outputs, neck outputs or
          head pre-logits.
        * ``fused``: the maps that enter the fusion neck (``'backbone'``;
          enhanced by ``fusion_pre_neck`` where set), the fusion neck's
          output (``'neck'``) or the fused head's pre-logits.
        * ``ensemble``: a tuple with each branch's feature at ``stage``
          (the last one of each branch for ``'backbone'``/``'neck'``).

        Returns:
            tuple[Tensor]: As described above.
        """
        if stage not in ('backbone', 'neck', 'pre_logits'):
            raise ValueError(f'Invalid output stage "{stage}", please choose '
                             'from "backbone", "neck" and "pre_logits"')
        maps, fusion_inputs = self.forward_maps(inputs)
        mode = self.predict_mode
        if mode == 'fused':
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

        if mode == 'ensemble':
            return tuple(
                branch_feat(i)[-1] for i in range(self.num_branches))
        return branch_feat(int(re.fullmatch(r'branch(\d+)', mode).group(1)))

    # ------------------------------------------------------------------
    # training and inference
    # ------------------------------------------------------------------
    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Cross-entropy of every classifier plus the distillation terms.

        Args:
            inputs (Tensor): ``(B, 3, H, W)``.
            data_samples (list[DataSample]): With ``gt_label`` (or
                ``gt_score`` after batch augmentation).

        Returns:
            dict[str, Tensor]: ``loss_ce_branch{i}``, ``loss_ce_fused``,
            ``loss_kd_branch{i}``, ``loss_kd_fused`` and ``kd_weight``
            (logged only), depending on what is configured.
        """
        branch_logits, fused_logits = self._forward_all(inputs)
        losses = {}
        for i, (head, logits) in enumerate(zip(self.heads, branch_logits)):
            losses.update(
                self._head_loss(head, logits, data_samples, f'branch{i}'))
        if self.with_fusion:
            losses.update(
                self._head_loss(self.fusion_head, fused_logits, data_samples,
                                'fused'))
        if self.distill_loss is not None:
            losses.update(self.distill_loss(branch_logits, fused_logits))
        return losses

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
        branch_logits, fused_logits = self._forward_all(inputs)
        logits = self._named_logits(branch_logits, fused_logits)
        scores = {name: F.softmax(z, dim=1) for name, z in logits.items()}
        branch_scores = torch.stack(
            [scores[f'branch{i}'] for i in range(self.num_branches)], dim=1)
        selected = scores[self.predict_mode]
        labels = selected.argmax(dim=1, keepdim=True)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(selected.size(0))]
        for i, sample in enumerate(data_samples):
            sample.set_pred_score(selected[i]).set_pred_label(labels[i])
            sample.set_field(branch_scores[i], 'branch_scores')
            sample.set_field(scores['ensemble'][i], 'ensemble_score')
            if 'fused' in scores:
                sample.set_field(scores['fused'][i], 'fused_score')
        return data_samples
