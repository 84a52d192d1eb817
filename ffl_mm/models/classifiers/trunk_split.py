# Copyright (c) ffl_mm contributors.
"""Sharing the stem and early stages of a backbone between branches."""
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn


class TrunkSplit:
    """Runs N copies of a staged backbone with the stem and the first
    ``shared_stages`` stages shared (FFL-S).

    A staged backbone lists its stage attributes in ``res_layers`` (as
    MMPretrain's ``ResNet``, ``ResNetV1c``, ``ResNetV1d``, ``ResNet_CIFAR``,
    ``ResNeXt``, ``SEResNet`` ... and ffl_mm's ``CIFARResNet`` and
    ``WideResNet`` do) and either defines ``forward_stem(x)`` or has a
    ResNet stem (``stem`` with ``deep_stem``, else ``conv1``/``norm1``/
    ``relu``, then ``maxpool`` where present).

    Branch 0 keeps its whole backbone: its stem and first stages are the
    shared trunk. The other copies lose every module but their own late
    stages (so the parameters are counted once). The state-dict keys of
    each copy stay those of the plain backbone, which is what exporting a
    student relies on.

    Args:
        backbones (Sequence[nn.Module]): The N built copies (modified in
            place).
        shared_stages (int): k, with ``1 <= k < len(res_layers)``.

    Raises:
        TypeError: A backbone without ``res_layers``.
        ValueError: ``shared_stages`` out of range, ``out_indices`` that
            all lie in the trunk, or ``frozen_stages`` set.
    """

    def __init__(self, backbones: Sequence[nn.Module], shared_stages: int):
        first = backbones[0]
        names = getattr(first, 'res_layers', None)
        if not names:
            raise TypeError(
                f'shared_stages={shared_stages} needs a backbone whose stages '
                'can be split (MMPretrain\'s ResNet family: ResNet, '
                'ResNetV1c, ResNetV1d, ResNet_CIFAR, ResNeXt, SEResNet; '
                'ffl_mm\'s CIFARResNet and WideResNet). '
                f'{type(first).__name__} has no `res_layers`; use '
                'shared_stages=0 for independent branches.')
        if not isinstance(shared_stages, int) or not \
                1 <= shared_stages < len(names):
            raise ValueError(
                f'shared_stages={shared_stages!r} is out of range for '
                f'{type(first).__name__} with {len(names)} stages: use 0 '
                f'(independent branches) to {len(names) - 1} (every stage '
                'but the last shared).')
        for i, backbone in enumerate(backbones):
            if type(backbone) is not type(first) or \
                    list(backbone.res_layers) != list(names):
                raise ValueError(
                    'shared_stages needs identical backbones in every '
                    f'branch; branch {i} is a {type(backbone).__name__} with '
                    f'stages {backbone.res_layers}, branch 0 a '
                    f'{type(first).__name__} with stages {names}.')
            if getattr(backbone, 'frozen_stages', -1) >= 0:
                raise ValueError(
                    f'frozen_stages={backbone.frozen_stages} cannot be '
                    'combined with shared_stages; freeze parameters through '
                    "optim_wrapper.paramwise_cfg (lr_mult=0.) instead.")
        out_indices = tuple(getattr(first, 'out_indices', (len(names) - 1, )))
        if max(out_indices) < shared_stages:
            raise ValueError(
                f'out_indices={out_indices} all lie in the shared trunk '
                f'(shared_stages={shared_stages}); the branches need at '
                'least one of their own stages as output.')
        self.shared_stages = shared_stages
        self.stage_names = list(names)
        self.out_indices = out_indices
        for backbone in backbones[1:]:
            keep = set(self.stage_names[shared_stages:])
            for name, _ in list(backbone.named_children()):
                if name not in keep:
                    delattr(backbone, name)

    def backbone_state_dict(self, backbones: Sequence[nn.Module],
                            branch: int) -> Dict[str, torch.Tensor]:
        """Branch ``branch``'s backbone as one plain backbone's state dict:
        the shared stem and stages of branch 0, then the branch's own
        stages (same keys as a backbone built from the same config)."""
        late = set(self.stage_names[self.shared_stages:])
        state = OrderedDict(
            (k, v) for k, v in backbones[0].state_dict().items()
            if k.split('.', 1)[0] not in late)
        state.update(backbones[branch].state_dict())
        return state

    @staticmethod
    def forward_stem(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The stem of a staged backbone: ``(B, C, H, W)`` in, the input
        of its first stage out."""
        if hasattr(backbone, 'forward_stem'):
            return backbone.forward_stem(x)
        if getattr(backbone, 'deep_stem', False):
            x = backbone.stem(x)
        else:
            x = backbone.relu(backbone.norm1(backbone.conv1(x)))
        maxpool = getattr(backbone, 'maxpool', None)
        return maxpool(x) if maxpool is not None else x

    def _shared(self, backbones: Sequence[nn.Module], x: torch.Tensor):
        """The trunk's output and the outputs of shared stages in
        ``out_indices``."""
        trunk = backbones[0]
        x = self.forward_stem(trunk, x)
        shared_outs = []
        for i, name in enumerate(self.stage_names[:self.shared_stages]):
            x = getattr(trunk, name)(x)
            if i in self.out_indices:
                shared_outs.append(x)
        return x, shared_outs

    def forward(self, backbones: Sequence[nn.Module], x: torch.Tensor
                ) -> Tuple[List[Tuple[torch.Tensor, ...]], torch.Tensor]:
        """Run the trunk once and every branch on its output.

        Args:
            backbones: The N copies given to the constructor.
            x (Tensor): Images ``(B, 3, H, W)``.

        Returns:
            tuple: ``(feats, trunk)``: for each branch, the outputs of the
            stages in ``out_indices`` (as the plain backbone returns them;
            outputs of shared stages are the same tensors in every branch),
            and the output of the last shared stage ``(B, C, H', W')`` (ONE's
            gate reads it).
        """
        k = self.shared_stages
        x, shared_outs = self._shared(backbones, x)
        results = []
        for backbone in backbones:
            y, outs = x, list(shared_outs)
            for i, name in enumerate(self.stage_names[k:], start=k):
                y = getattr(backbone, name)(y)
                if i in self.out_indices:
                    outs.append(y)
            results.append(tuple(outs))
        return results, x
