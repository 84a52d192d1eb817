# Copyright (c) ffl_mm contributors.
"""DML: independent networks that learn from one another, updated one
after the other as in the paper's algorithm."""
from collections import OrderedDict
from typing import Dict, List

import torch
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from ...utils.private_api import accumulative_counts
from ...utils import output_names as names
from .head_loss import named_head_loss
from .multi_branch import MultiBranchClassifier

BRANCH_UPDATES = ('together', 'one_by_one')


@MODELS.register_module()
class DMLClassifier(MultiBranchClassifier):
    """Deep Mutual Learning (Zhang et al., CVPR 2018): independent networks,
    each trained with cross-entropy and a KD term towards its peers
    (``distill_loss=dict(type='PeerKDLoss')``); the ensemble is the mean of
    their logits.

    With ``branch_update='together'`` (the default, the shipped recipe) one
    backward and one optimizer step serve the summed loss, as in OKDDip's
    and MCL-OKD's code. ``'one_by_one'`` is the paper's Algorithm 1:
    within an iteration each network in turn is updated from its own
    terms, against its peers' current predictions (:meth:`train_step`).

    Args:
        branch_update (str): ``'together'`` (default) or ``'one_by_one'``.
            ``'one_by_one'`` needs independent branches
            (``shared_stages=0``), a single process (MMEngine's DDP wrapper
            does not call this model's ``train_step``) and no gradient
            accumulation (``optim_wrapper.accumulative_counts=1``).
        **kwargs: :class:`MultiBranchClassifier`'s arguments.
    """

    #: ``'one_by_one'`` computes each network's logits on their own
    compile_targets = ('_forward_all', '_branch_logits')

    def __init__(self, branch_update: str = 'together', **kwargs):
        if branch_update not in BRANCH_UPDATES:
            raise ValueError(
                f'DMLClassifier: branch_update={branch_update!r}; choose one '
                f'of {list(BRANCH_UPDATES)}.')
        if branch_update == 'one_by_one' and kwargs.get('shared_stages'):
            raise ValueError(
                "DMLClassifier: branch_update='one_by_one' updates "
                'independent networks in turn; shared stages serve every '
                "branch. Set shared_stages=0 or branch_update='together'.")
        super().__init__(**kwargs)
        self.branch_update = branch_update

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """As :meth:`MultiBranchClassifier.loss`; refused in distributed
        training with ``'one_by_one'`` (see :meth:`train_step`)."""
        if self.branch_update == 'one_by_one' and self.training and \
                torch.distributed.is_available() and \
                torch.distributed.is_initialized():
            raise RuntimeError(
                "DMLClassifier: branch_update='one_by_one' updates the "
                'branches in its own train_step, which distributed training '
                "(MMEngine's DDP wrapper) does not call; use "
                "branch_update='together' for distributed training.")
        return super().loss(inputs, data_samples)

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        """MMEngine's step; with ``'one_by_one'`` one update per network, in
        turn.

        Every network is forwarded once with gradients. Then for each
        network i: the networks updated before it in this iteration are
        forwarded again without gradients (their current predictions are
        network i's targets; the others have not moved), network i's terms
        are back-propagated (the targets are detached: only network i gets
        gradients) and the optimizer steps (parameters without a gradient
        are left alone). N + N(N-1)/2 network forwards per iteration;
        network j's BN statistics see the batch N - j times.

        Returns:
            dict[str, Tensor]: The log: each network's terms from its own
            update, ``loss`` their sum.

        Raises:
            ValueError: Gradient accumulation with ``'one_by_one'``: MMEngine
                counts every ``update_params`` call, so the networks'
                gradients would mix and steps fall at the wrong iterations.
        """
        if self.branch_update == 'together':
            return super().train_step(data, optim_wrapper)
        counts = accumulative_counts(optim_wrapper)
        if counts != 1:
            raise ValueError(
                "DMLClassifier: branch_update='one_by_one' steps each network "
                'once per iteration; it cannot accumulate gradients '
                f'(optim_wrapper.accumulative_counts={counts}). Set '
                "accumulative_counts=1 or branch_update='together'.")
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
                own = named_head_loss(self.heads[i], logits[i], samples, name)
                if self.distill_loss is not None:
                    distill = self.distill_loss(targets[:i] + [logits[i]] +
                                                targets[i + 1:], None)
                    own[f'loss_kd_{name}'] = distill[f'loss_kd_{name}']
                    own['kd_weight'] = distill['kd_weight']
            loss, logs = self.parse_losses(own)
            optim_wrapper.update_params(loss)
            total += float(logs.pop('loss').detach())
            log_vars.update(logs)
        log_vars['loss'] = torch.tensor(total)
        log_vars.move_to_end('loss', last=False)
        return log_vars

    def _branch_logits(self, i: int, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` of network i on its own."""
        return self.heads[i](self.necks[i](self._backbone_out(i, inputs)))
