# Copyright (c) ffl_mm contributors.
from .diverse_peer_kd_loss import DiversePeerKDLoss
from .kd_loss import KDLoss, kd_kl_div
from .mutual_kd_loss import MutualKDLoss
from .peer_kd_loss import PeerKDLoss
from .teacher_kd_loss import TeacherKDLoss
from .rampup import RampedKDLoss, sigmoid_rampup

__all__ = [
    'DiversePeerKDLoss', 'KDLoss', 'MutualKDLoss', 'PeerKDLoss',
    'RampedKDLoss', 'TeacherKDLoss', 'kd_kl_div', 'sigmoid_rampup'
]
