# Copyright (c) ffl_mm contributors.
from . import backbones, classifiers, losses, necks, tta, utils  # noqa: F401
