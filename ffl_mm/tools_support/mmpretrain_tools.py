# Copyright (c) ffl_mm contributors.
"""MMPretrain's own tools as the base of ffl_mm's: their argument parsing and
config merging loaded from the installed mmpretrain, the data-loader settings
PyTorch would reject, and what ffl_mm's tools print. Not imported by
``import ffl_mm``."""
import argparse
import contextlib
import importlib.util
import logging
import os
import os.path as osp
import sys
from types import ModuleType
from typing import Iterator, List, Optional

from mmengine.config import Config
from mmengine.logging import MMLogger

from .data_checks import DATALOADER_KEYS


def mmpretrain_tool(name: str) -> ModuleType:
    """MMPretrain's own ``tools/<name>.py``, loaded as a module.

    ffl_mm's ``tools/train.py`` and ``tools/test.py`` parse their arguments
    and merge them into the config with these very functions
    (``parse_args``, ``merge_args``), so that they behave exactly as
    MMPretrain's tools, data-loader defaults included. The mmpretrain wheel
    ships them under ``mmpretrain/.mim/tools``; a source checkout of
    MMPretrain has them under ``tools/``.
    """
    import mmpretrain
    package = osp.dirname(mmpretrain.__file__)
    for path in (osp.join(package, '.mim', 'tools', f'{name}.py'),
                 osp.join(osp.dirname(package), 'tools', f'{name}.py')):
        if osp.isfile(path):
            spec = importlib.util.spec_from_file_location(
                f'mmpretrain_tools_{name}', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(
        f'MMPretrain\'s tools/{name}.py is not installed with mmpretrain '
        f'({package}); install the mmpretrain wheel (pip install '
        'mmpretrain==1.2.0).')


@contextlib.contextmanager
def tool_argv(prog: str, argv: Optional[List[str]]) -> Iterator[None]:
    """``sys.argv`` as ``[prog, *argv]`` inside the block (the command line
    of this process when ``argv`` is None), for MMPretrain's tools, which
    read ``sys.argv`` themselves."""
    saved = sys.argv
    sys.argv = [prog, *(sys.argv[1:] if argv is None else argv)]
    try:
        yield
    finally:
        sys.argv = saved


def parse_tool_args(tool: ModuleType, argv: Optional[List[str]],
                    prog: str) -> argparse.Namespace:
    """``tool.parse_args()`` on ``argv``."""
    with tool_argv(prog, argv):
        return tool.parse_args()


def sanitize_dataloaders(cfg: Config) -> None:
    """Give data loaders with ``num_workers=0`` ``persistent_workers=False``
    (in place).

    MMPretrain's tools turn ``persistent_workers`` on for every loader that
    does not set it, and PyTorch raises a ValueError for persistent workers
    without workers (the digits configs load in the main process).
    """
    for key in DATALOADER_KEYS:
        loader = cfg.get(key, None)
        if loader and loader.get('num_workers', 0) == 0 and \
                loader.get('persistent_workers', False):
            loader['persistent_workers'] = False


def python_command() -> str:
    """The interpreter running this tool, as a user types it from the
    current directory (``.venv/bin/python`` after ``make``), for the
    commands that tools print."""
    exe = sys.executable
    rel = osp.relpath(exe, os.getcwd())
    return exe if rel.startswith('..') else rel


def quiet_logger(level: int = logging.WARNING) -> None:
    """Only ``level`` and above from MMEngine's current logger: the
    per-parameter report of ``init_weights()`` and similar INFO lines
    would bury what a tool prints."""
    MMLogger.get_current_instance().setLevel(level)
