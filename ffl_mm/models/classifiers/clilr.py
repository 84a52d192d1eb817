# Copyright (c) ffl_mm contributors.
"""CL-ILR: heads on a shared trunk that learn from one another, the
trunk's gradient rescaled."""
import torch

from ffl_mm.registry import MODELS
from .branch_features import BranchFeatures
from .multi_branch import MultiBranchClassifier


@MODELS.register_module()
class CLILRClassifier(MultiBranchClassifier):
    """Collaborative learning with intermediate-level representation
    sharing (Song and Chai, NeurIPS 2018): N heads on a shared trunk, each
    trained with cross-entropy and a KD term towards the mean of the other
    heads' logits (``PeerKDLoss(peer_target='mean_logits')``), and the
    trunk's gradient divided by N in backward ("backprop rescaling"), so
    that the shared layers learn at the rate of one head::

        images -> trunk -> x  (gradient into the trunk: sum_i g_i / N)
        x -> head i's own stages -> neck_i -> head_i -> z_i
        loss = Σ CE(z_i) + w · Σ T² KL(softmax(mean_{j≠i} z_j / T)
                                        ‖ softmax(z_i / T))

    The ensemble (the mean of the logits) is what it predicts by default.
    The public code (the OKDDip repository's ``resnet_one.py`` with
    ``avg=True, bpscale=True``) keeps the targets' graph, so each KL also
    trains the heads that make its target: the CL-ILR configs set
    ``PeerKDLoss(detach_peers=False)``; ``True`` keeps them fixed.

    Args:
        grad_rescale (bool): Divide the gradient that reaches the shared
            trunk by N. Defaults to True (the paper's ILR). Needs
            ``shared_stages >= 1``.
        **kwargs: :class:`MultiBranchClassifier`'s arguments.
    """

    def __init__(self, grad_rescale: bool = True, **kwargs):
        if grad_rescale and not kwargs.get('shared_stages'):
            raise ValueError(
                'CLILRClassifier: grad_rescale=True divides the gradient of '
                'the shared trunk, and shared_stages=0 shares nothing; set '
                'shared_stages >= 1 (the heads share the stem and the first '
                'stages) or grad_rescale=False.')
        super().__init__(**kwargs)
        self.grad_rescale = bool(grad_rescale)

    def forward_features(self, inputs: torch.Tensor) -> BranchFeatures:
        """As the base class; in training, the trunk's output ``(B, C, H,
        W)`` passes its gradient back divided by N."""
        features = super().forward_features(inputs)
        trunk = features.trunk
        if self.grad_rescale and trunk is not None and trunk.requires_grad:
            n = self.num_branches
            trunk.register_hook(lambda grad: grad / n)
        return features
