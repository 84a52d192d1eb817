# Copyright (c) ffl_mm contributors.
from . import (backbones, classifiers, heads, losses, necks, tta,  # noqa: F401
               utils)
