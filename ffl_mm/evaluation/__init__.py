# Copyright (c) ffl_mm contributors.
from . import metrics  # noqa: F401
