# Copyright (c) ffl_mm contributors.
"""Inferring and checking the channels of branch heads and fusion modules
from one run of the branches on a probe input at build time."""
import contextlib
import copy
import inspect
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from ffl_mm.registry import MODELS

#: Side of the probe image.
PROBE_SIZE = 64


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
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


def describe(x) -> str:
    """What a module gave, for messages: ``'a map (2, 64, 8, 8)'``."""
    if not torch.is_tensor(x):
        return f'a {type(x).__name__}'
    kind = {2: 'a vector', 3: 'a token sequence', 4: 'a map'}.get(
        x.dim(), f'a {x.dim()}-d tensor')
    return f'{kind} {tuple(x.shape)}'


def _last(out):
    """The last of a neck's outputs (necks may return tuples)."""
    return out[-1] if isinstance(out, (list, tuple)) else out


def _channels(x) -> Optional[int]:
    """Dimension 1 of a ``(B, C, ...)`` tensor; None for anything else."""
    return int(x.shape[1]) if torch.is_tensor(x) and x.dim() >= 2 else None


@dataclass
class BranchProbe:
    """What each branch gives on the probe.

    Attributes:
        backbones (list[str]): Each branch's backbone class name.
        outputs (list[str]): Each branch's output at ``fusion_in_index``
            described (:func:`describe`).
        maps (list[Tensor]): Those outputs, the inputs of a fusion neck.
        head_channels (list[int | None]): Channels of each branch neck's
            output (a head's ``in_channels``); None where not a tensor.
        trunk_channels (int, optional): Channels of the shared trunk's
            output (ONE's gate reads it); None without a shared trunk.
        error (str, optional): Why nothing could be inferred (the
            backbones could not run on the probe).
    """
    backbones: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    maps: List[torch.Tensor] = field(default_factory=list)
    head_channels: List[Optional[int]] = field(default_factory=list)
    trunk_channels: Optional[int] = None
    error: Optional[str] = None

    @property
    def map_channels(self) -> List[Optional[int]]:
        """Channels of each map to fuse; None for a non-map output."""
        return [
            int(x.shape[1]) if torch.is_tensor(x) and x.dim() == 4 else None
            for x in self.maps
        ]

    def head_in(self, branch: int) -> Optional[int]:
        """The channels a head of branch ``branch`` gets, if known."""
        return self.head_channels[branch] if self.head_channels else None

    def source(self, branch: int) -> str:
        """``"branch 0's ConvNeXt gives a vector (2, 320) for a 64 px
        probe"``; the probe's error if the branches could not run."""
        if self.error is not None:
            return self.error
        return (f"branch {branch}'s {self.backbones[branch]} gives "
                f'{self.outputs[branch]} for a {PROBE_SIZE} px probe')


def probe_branches(forward_features: Callable, backbones: Sequence,
                   necks: Sequence[nn.Module], fusion_in_index: int,
                   need_maps: bool) -> BranchProbe:
    """Run every branch once on zeros ``(2, 3, 64, 64)`` (eval mode, no
    gradient, no random numbers drawn).

    Args:
        forward_features (callable): Images ``(B, 3, H, W)`` to the
            classifier's ``BranchFeatures`` (N tuples of backbone outputs,
            ``feats``, and the shared trunk's output, ``trunk``).
        backbones (Sequence[nn.Module]): The N backbones (for names and
            eval mode).
        necks (Sequence[nn.Module]): The N branch necks.
        fusion_in_index (int): Which backbone output is fused.
        need_maps (bool): Whether the outputs must be ``(B, C, H, W)`` maps
            (there is a fusion neck).

    Returns:
        BranchProbe: The shapes found.

    Raises:
        ValueError: ``fusion_in_index`` out of range, a non-map output to
            fuse, or a branch neck that fails on its backbone's output.
    """
    names = [type(b).__name__ for b in backbones]
    with eval_mode(*backbones, *necks):
        try:
            features = forward_features(
                torch.zeros(2, 3, PROBE_SIZE, PROBE_SIZE))
        except Exception as error:  # a backbone that needs other inputs
            return BranchProbe(
                backbones=names,
                error=f'running the branches on a (2, 3, {PROBE_SIZE}, '
                f'{PROBE_SIZE}) probe failed: {error!r}')
        feats = features.feats
        for i, f in enumerate(feats):
            if not -len(f) <= fusion_in_index < len(f):
                raise ValueError(
                    f'MultiBranchClassifier: fusion_in_index='
                    f"{fusion_in_index} but branch {i}'s backbone gives "
                    f'{len(f)} output(s); use -1 (the last) or an index '
                    f'below {len(f)}.')
        maps = [f[fusion_in_index] for f in feats]
        probe = BranchProbe(
            backbones=names, outputs=[describe(x) for x in maps], maps=maps,
            trunk_channels=_channels(features.trunk))
        if need_maps:
            for i, x in enumerate(maps):
                if not (torch.is_tensor(x) and x.dim() == 4):
                    raise ValueError(
                        f'MultiBranchClassifier: {probe.source(i)}; the '
                        'fusion neck needs a map (B, C, H, W). For '
                        "VisionTransformer-like backbones set out_type="
                        "'featmap' (patch tokens as a map), for ConvNeXt "
                        'gap_before_final_norm=False; otherwise choose a map '
                        'output with out_indices / fusion_in_index.')
        for i, (f, neck) in enumerate(zip(feats, necks)):
            try:
                out = neck(f)
            except Exception as error:
                raise ValueError(
                    f"MultiBranchClassifier: the neck of branch {i} "
                    f'({type(neck).__name__}) fails on what its backbone '
                    f'gives ({probe.source(i)}): {error!r}. Choose a neck '
                    'for that output (neck=None passes vectors to the head '
                    'as they are).') from None
            probe.head_channels.append(_channels(_last(out)))
    return probe


def probe_fusion(fusion_neck: nn.Module, probe: BranchProbe) -> BranchProbe:
    """The probe of the fusion head: one 'branch', the fusion neck's output
    on the probe maps (``head_channels[0]``)."""
    if probe.error is not None:
        return probe
    name = type(fusion_neck).__name__
    try:
        with eval_mode(fusion_neck):
            out = fusion_neck(probe.maps)
    except Exception as error:
        return BranchProbe(
            backbones=[name],
            error=f'running the fusion neck on the probe maps failed: '
            f'{error!r}')
    out = _last(out)
    return BranchProbe(
        backbones=[name], outputs=[describe(out)], maps=[out],
        head_channels=[_channels(out)])


def accepts_in_channels(cfg: dict) -> bool:
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


def with_in_channels(cfg: Union[None, dict, nn.Module],
                     found: Union[None, int, List[Optional[int]]], key: str,
                     source: str,
                     branch: Optional[int] = None
                     ) -> Union[None, dict, nn.Module]:
    """``cfg`` with ``in_channels`` filled in from the probe, or checked
    against it.

    Args:
        cfg: A head/neck config (a built module is returned as is).
        found: The channels the probe found (a list for a fusion neck),
            None if unknown.
        key (str): The config key: ``'head'``, ``'fusion_neck'``, ...
        source (str): What gives the input, or why it is unknown, e.g.
            :meth:`BranchProbe.source`.
        branch (int, optional): The branch of a per-branch config.

    Raises:
        ValueError: No ``in_channels`` and none could be inferred, or a
            given value that disagrees with the probe.
    """
    if cfg is None or isinstance(cfg, nn.Module) or \
            not accepts_in_channels(cfg):
        return cfg
    cfg = copy.deepcopy(cfg)
    where = key if branch is None else f'{key} of branch {branch}'
    given = cfg.get('in_channels')
    if isinstance(found, list) and None in found:
        found = None
    if found is None:
        if given is None:
            raise ValueError(
                f'MultiBranchClassifier: {where} has no in_channels and it '
                f'could not be inferred ({source}); set {key}.in_channels.')
        return cfg
    if given is None:
        cfg['in_channels'] = found
    elif isinstance(given, int) and isinstance(found, int) and \
            given != found:
        raise ValueError(
            f'MultiBranchClassifier: {where} has in_channels={given} but '
            f'gets {found} channels ({source}); set in_channels={found} or '
            'leave it out to have it inferred.')
    return cfg


def check_fusion_channels(fusion_neck: nn.Module, probe: BranchProbe) -> None:
    """A built fusion neck's ``in_channels`` must match the branch maps."""
    expected = getattr(fusion_neck, 'in_channels', None)
    found = probe.map_channels
    if probe.error is not None or not isinstance(expected, (list, tuple)):
        return
    if len(expected) != len(found):
        raise ValueError(
            f'MultiBranchClassifier: fusion_neck.in_channels={list(expected)}'
            f' is for {len(expected)} branches, the model has {len(found)}.')
    for i, (want, got) in enumerate(zip(expected, found)):
        if want != got:
            raise ValueError(
                f'MultiBranchClassifier: fusion_neck.in_channels='
                f'{list(expected)} but {probe.source(i)} (all branches: '
                f'{found} channels); set fusion_neck.in_channels={found} or '
                'leave it out to have it inferred.')
