# Copyright (c) ffl_mm contributors.
"""Helpers of ffl_mm's tools (``tools/train.py``, ``tools/test.py``,
``tools/export.py``, the demo and the analysis tools): launching on the
CPU, checks a tool runs before anything is built, the commands it prints.
A run does not need them and ``import ffl_mm`` does not import them; what
a run relies on is in :mod:`ffl_mm.engine`."""
