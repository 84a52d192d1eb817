# Copyright (c) ffl_mm contributors.
"""Support of the analysis tools (``tools/analysis_tools/``): benchmark,
Runner-versus-bare-loop timing and results analysis. Not imported by
``import ffl_mm``."""
