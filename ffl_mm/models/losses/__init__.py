# Copyright (c) ffl_mm contributors.
from .kd_loss import KDLoss, kd_kl_div
from .mutual_kd_loss import MutualKDLoss
from .rampup import sigmoid_rampup

__all__ = ['KDLoss', 'MutualKDLoss', 'kd_kl_div', 'sigmoid_rampup']
