# Copyright (c) ffl_mm contributors.
"""Install ffl_mm: ``pip install .`` or ``pip install -e .``.

Like MMPretrain's own wheel, the package carries ``configs/`` and ``tools/``
under ``ffl_mm/.mim/`` so they are found from an installed copy (for
example ``mim train ffl_mm ...`` or ``ffl_mm::`` config bases). An editable
install links them; any other build copies them.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def read_version() -> str:
    """Read ``__version__`` without importing the package."""
    scope: dict = {}
    with open(osp.join(HERE, 'ffl_mm', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt`` (comments dropped)."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def install_requires() -> list:
    """Runtime requirements; keep a real ``mmcv`` instead of mmcv-lite.

    ``mmcv-lite`` has everything classification needs and no compiled ops,
    so it installs everywhere. A user who already has a full ``mmcv`` wheel
    (with CUDA ops) keeps it: then mmcv-lite is not added.
    """
    reqs = read_requirements('runtime.txt')
    try:
        from importlib.metadata import PackageNotFoundError, version
        version('mmcv')
    except PackageNotFoundError:
        return reqs
    return [r for r in reqs if not r.startswith('mmcv-lite')]


def add_mim_extension() -> None:
    """Place ``configs/``, ``tools/`` and ``model-index.yml`` under
    ``ffl_mm/.mim/``.

    Symbolic links for an editable install (edits show at once), copies
    for wheels and sdists.
    """
    editable = any(cmd in sys.argv for cmd in ('develop', 'editable_wheel'))
    mim_dir = osp.join(HERE, 'ffl_mm', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for item in MIM_ITEMS:
        src = osp.join(HERE, item)
        dst = osp.join(mim_dir, item)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if editable:
            os.symlink(osp.relpath(src, mim_dir), dst)
        elif osp.isfile(src):
            shutil.copy2(src, dst)
        else:
            shutil.copytree(
                src,
                dst,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='ffl_mm',
        version=read_version(),
        description='Online mutual knowledge distillation (FFL, MFEF) as an '
        'MMPretrain plugin',
        long_description=open(osp.join(HERE, 'README.md')).read()
        if osp.exists(osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        python_requires='>=3.9',
        packages=find_packages(include=['ffl_mm', 'ffl_mm.*']),
        include_package_data=True,
        package_data={
            'ffl_mm': [
                '.mim/configs/**/*.py', '.mim/tools/*', '.mim/model-index.yml'
            ],
        },
        install_requires=install_requires(),
        extras_require={'tests': read_requirements('tests.txt')},
        license='Apache License 2.0',
        zip_safe=False,
    )
