# Copyright (c) ffl_mm contributors.
"""The benchmark lab and the results tables behind ffl_mm's analysis tools
(``benchmark.py``, ``analyze_runs.py``, ``tools/demo.py``). Tools only: it is
not part of the installed ``ffl_mm`` package (as MMPretrain keeps such code
under ``tools/analysis_tools/``); a tool puts this folder on ``sys.path``."""
