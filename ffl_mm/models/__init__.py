# Copyright (c) ffl_mm contributors.
from . import backbones, classifiers, losses, necks, utils  # noqa: F401
