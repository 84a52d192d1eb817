# Copyright (c) ffl_mm contributors.
"""The analysis tools' lab (``tools/analysis_tools/ffl_mm_analysis``) for
the tests, loaded from its folder as the package ``ffl_mm_analysis``
without putting the tools' folder on ``sys.path``."""
import importlib
import importlib.util
import os.path as osp
import sys

from conftest import REPO

LAB = osp.join(REPO, 'tools', 'analysis_tools', 'ffl_mm_analysis')


def lab(module: str):
    """``ffl_mm_analysis.<module>`` (the package loaded once, from
    :data:`LAB`)."""
    if 'ffl_mm_analysis' not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            'ffl_mm_analysis', osp.join(LAB, '__init__.py'),
            submodule_search_locations=[LAB])
        package = importlib.util.module_from_spec(spec)
        sys.modules['ffl_mm_analysis'] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f'ffl_mm_analysis.{module}')
