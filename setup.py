# Copyright (c) ffl_mm contributors.
"""Install ffl_mm: ``pip install .`` or ``pip install -e .``.

Like MMPretrain's own wheel, the package carries ``configs/`` and ``tools/``
under ``ffl_mm/.mim/`` so they are found from an installed copy (for
example ``mim train ffl_mm ...`` or ``ffl_mm::`` config bases). An editable
install links them in the checkout; a wheel gets copies in its build
directory, so the checkout stays clean.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def read_version() -> str:
    """Read ``__version__`` without importing the package."""
    scope: dict = {}
    with open(osp.join(HERE, 'ffl_mm', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt`` (comments dropped,
    ``-r other.txt`` lines replaced by that file's requirements)."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = [line.split('#')[0].strip() for line in f]
    reqs = []
    for line in lines:
        if line.startswith('-r '):
            reqs += read_requirements(line[3:].strip())
        elif line:
            reqs.append(line)
    return reqs


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


def link_mim_dir() -> None:
    """Link ``configs/``, ``tools/`` and ``model-index.yml`` into the
    checkout's ``ffl_mm/.mim/`` (ignored by git), for an editable install.

    MMEngine (``ffl_mm::`` bases) and mim look for them under
    ``<distribution location>/ffl_mm/.mim/``. A legacy editable install
    (``pip install --no-use-pep517 -e .``, what ``make`` runs) puts the
    checkout on ``sys.path`` as the distribution's location, so the links
    are found and edits show at once. (A PEP 660 editable install keeps the
    distribution in site-packages, where MMEngine finds no ``ffl_mm/``.)
    """
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
        os.symlink(osp.relpath(src, mim_dir), dst)


class BuildPyWithMim(build_py):
    """``build_py`` that also copies ``configs/``, ``tools/`` and
    ``model-index.yml`` to ``ffl_mm/.mim/`` in the build directory, as
    MMPretrain's wheel carries them. The checkout is left as it is."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        mim_dir = osp.join(self.build_lib, 'ffl_mm', '.mim')
        if osp.isdir(mim_dir) or osp.islink(mim_dir):
            shutil.rmtree(mim_dir) if not osp.islink(mim_dir) else \
                os.remove(mim_dir)
        os.makedirs(mim_dir)
        for item in MIM_ITEMS:
            src = osp.join(HERE, item)
            if osp.isfile(src):
                shutil.copy2(src, osp.join(mim_dir, item))
            elif osp.isdir(src):
                shutil.copytree(
                    src,
                    osp.join(mim_dir, item),
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


if __name__ == '__main__':
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        link_mim_dir()
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
        cmdclass={'build_py': BuildPyWithMim},
        install_requires=install_requires(),
        extras_require={
            'tests': read_requirements('tests.txt'),
            'optional': read_requirements('optional.txt'),
            'deploy': read_requirements('deploy.txt'),
        },
        license='Apache License 2.0',
        zip_safe=False,
    )
