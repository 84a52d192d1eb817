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
    name), its demo config (the folder's ``*_digits.py``) and the config
    the benchmarks time (its first CIFAR ResNet-32 config), relative to
    the repository."""
    label: str
    demo_config: str
    bench_config: str


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
        benches = sorted(glob.glob(
            osp.join(repo, folder, '*_resnet32x*_cifar100.py')))
        if len(demos) != 1 or not benches:
            raise ValueError(
                f'{folder}: a method folder needs one *_digits.py config '
                f'(its demo, found {len(demos)}) and a '
                f'*_resnet32x*_cifar100.py (the benchmarks\', found '
                f'{len(benches)}).')
        methods[osp.basename(folder)] = Method(
            label, *(osp.relpath(p, repo).replace(osp.sep, '/')
                     for p in (demos[0], benches[0])))
    return methods
