# Copyright (c) ffl_mm contributors.
from . import (backbones, classifiers, data_preprocessors,  # noqa: F401
               heads, losses, necks, tta, utils)
