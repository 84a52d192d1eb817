# Copyright (c) ffl_mm contributors.
"""The shipped methods, read from the model zoo rather than listed: every
metafile of ``model-index.yml`` (in its order) is a method, named by its
collection, with its digits config as the demo."""
import glob
import os.path as osp
from typing import Dict, NamedTuple

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


class Method(NamedTuple):
    """A shipped method: its label in tables (the metafile's collection
    name) and its demo config (the folder's ``*_digits.py``)."""
    label: str
    demo_config: str


def shipped_methods(repo: str = REPO) -> Dict[str, Method]:
    """``{folder name: Method}`` for every metafile of ``model-index.yml``,
    in that file's order.

    Raises:
        ValueError: A method folder with no single ``*_digits.py`` config.
    """
    with open(osp.join(repo, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    methods = {}
    for metafile in metafiles:
        folder = osp.dirname(metafile)
        with open(osp.join(repo, metafile)) as f:
            label = yaml.safe_load(f)['Collections'][0]['Name']
        demos = sorted(glob.glob(osp.join(repo, folder, '*_digits.py')))
        if len(demos) != 1:
            raise ValueError(
                f'{folder}: a method folder needs one *_digits.py config '
                f'(its demo), found {len(demos)}.')
        methods[osp.basename(folder)] = Method(
            label, osp.relpath(demos[0], repo).replace(osp.sep, '/'))
    return methods
