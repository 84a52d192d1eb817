# Copyright (c) ffl_mm contributors.
from . import backbones, classifiers, losses, necks  # noqa: F401
