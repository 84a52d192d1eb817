# Copyright (c) ffl_mm contributors.
"""What ``make`` installs (a legacy editable install) and a wheel both serve
``ffl_mm::`` config bases and the tools under ``ffl_mm/.mim/`` (what
``mim train ffl_mm`` runs): a user's config that inherits ours builds and
trains one iteration. A wheel build leaves the checkout as it is."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

# A user's own config, as an MMPretrain user writes one for another
# package's model: inherit by scope, change the data.
USER_CFG = """_base_ = ['ffl_mm::ffl/ffl_resnet32x2_digits.py']
train_dataloader = dict(batch_size=16, dataset=dict(indices=16))
val_dataloader = dict(batch_size=16, dataset=dict(indices=16))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
"""

# where MMEngine finds the package's .mim, and where Python imports it from
WHERE = ('import importlib.util, json; '
         'from mmengine.utils import get_installed_path; '
         'print(json.dumps([get_installed_path("ffl_mm"), '
         'importlib.util.find_spec("ffl_mm").origin]))')


def _train_user_config(train_py, tmp_path, env=None):
    """Run ``train_py`` (an installed ``.mim/tools/train.py``) on the user
    config from ``tmp_path``; return its log."""
    (tmp_path / 'mine.py').write_text(USER_CFG)
    work_dir = tmp_path / 'work'
    out = subprocess.run(
        [sys.executable, str(train_py), 'mine.py', '--work-dir',
         str(work_dir)],
        cwd=str(tmp_path),
        env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    assert out.returncode == 0, out.stdout[-5000:]
    assert osp.isfile(work_dir / 'epoch_1.pth'), out.stdout[-3000:]
    return out.stdout


def _where(cwd, env=None):
    import json
    out = subprocess.run([sys.executable, '-c', WHERE], cwd=str(cwd),
                         env=dict(os.environ, **(env or {})),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_editable_install_serves_ffl_mm_scope_and_mim_tools(
        tmp_path, run_in_process):
    """MMEngine looks for ``<installed path>/.mim/configs``: after ``make``
    that must be the checkout (a PEP 660 editable install would answer
    site-packages, where nothing is). Asked from another directory, as the
    checkout on ``sys.path`` would answer for any install."""
    package, module = _where(tmp_path)
    assert package == osp.join(REPO, 'ffl_mm'), (
        f'MMEngine finds ffl_mm at {package}; install it as `make` does '
        '(pip install --no-use-pep517 -e .)')
    assert module == osp.join(REPO, 'ffl_mm', '__init__.py')
    mim = osp.join(package, '.mim')
    for item in ('configs', 'tools', 'model-index.yml'):
        assert osp.islink(osp.join(mim, item))
        assert osp.realpath(osp.join(mim, item)) == osp.join(REPO, item)
    # the user config trains through the tool mim runs (in this process)
    (tmp_path / 'mine.py').write_text(USER_CFG)
    _, log = run_in_process('train.py', tmp_path / 'mine.py', '--work-dir',
                            tmp_path / 'work')
    assert 'Epoch(train) [1][1/1]' in log
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


def _copy_checkout(dst):
    """The files a checkout has, with ``ffl_mm/.mim`` linked as after
    ``make``."""
    files = subprocess.run(['git', 'ls-files', '--cached', '--others',
                            '--exclude-standard'], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if osp.isfile(osp.join(REPO, name)):
            os.makedirs(osp.dirname(osp.join(dst, name)), exist_ok=True)
            shutil.copy2(osp.join(REPO, name), osp.join(dst, name))
    mim = osp.join(dst, 'ffl_mm', '.mim')
    os.makedirs(mim)
    for item in ('configs', 'tools', 'model-index.yml'):
        os.symlink(osp.join('..', '..', item), osp.join(mim, item))


def _tree(root):
    return sorted(
        p for p in glob.glob(osp.join(root, '**'), recursive=True)
        if not p.startswith((osp.join(root, 'build'),
                             osp.join(root, 'ffl_mm.egg-info'))))


@pytest.mark.e2e
def test_wheel_carries_configs_and_tools_and_leaves_the_checkout(tmp_path):
    src = tmp_path / 'src'
    _copy_checkout(str(src))
    before = _tree(str(src))
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(tmp_path / 'dist'),
        str(src)
    ], check=True, capture_output=True, timeout=300)
    # nothing in the checkout changed but the build directories that git
    # ignores; the .mim links are still links
    assert _tree(str(src)) == before
    for item in ('configs', 'tools', 'model-index.yml'):
        assert osp.islink(src / 'ffl_mm' / '.mim' / item)
    wheel, = (tmp_path / 'dist').glob('ffl_mm-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ('tools/train.py', 'tools/dist_train.sh', 'model-index.yml',
                 'configs/_base_/default_runtime.py',
                 'configs/ffl/ffl_resnet32x2_digits.py',
                 'tools/analysis_tools/ffl_mm_analysis/benchmark.py'):
        assert f'ffl_mm/.mim/{name}' in names, name
    assert not [n for n in names if '__pycache__' in n]
    # the benchmark lab is the tools', not the package's (MMPretrain's way)
    assert not [n for n in names if n.startswith('ffl_mm/analysis')]
    assert 'ffl_mm/models/classifiers/ffl.py' in names

    # Installed from the wheel (ahead of the editable checkout on the path)
    site = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
        str(site), str(wheel)
    ], check=True, capture_output=True, timeout=300)
    env = dict(PYTHONPATH=str(site))
    run = tmp_path / 'run'
    run.mkdir()
    package, module = _where(run, env)
    assert package == str(site / 'ffl_mm')
    assert module == str(site / 'ffl_mm' / '__init__.py')
    log = _train_user_config(site / 'ffl_mm' / '.mim' / 'tools' / 'train.py',
                             run, env)
    assert 'Epoch(train) [1][1/1]' in log


@pytest.mark.e2e
@pytest.mark.extras
def test_mim_trains_a_user_config(tmp_path):
    """``mim train ffl_mm CONFIG`` and ``mim test`` (openmim:
    ``make extras``; run by ``make test-extras``)."""
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    if not osp.isfile(mim):
        pytest.skip('openmim is not installed (make extras)')
    (tmp_path / 'mine.py').write_text(USER_CFG)
    out = subprocess.run(
        [mim, 'train', 'ffl_mm', 'mine.py', '--work-dir',
         str(tmp_path / 'work')],
        cwd=str(tmp_path), env=dict(os.environ, OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    assert out.returncode == 0, out.stdout[-5000:]
    assert osp.isfile(tmp_path / 'work' / 'epoch_1.pth'), out.stdout[-3000:]
    out = subprocess.run(
        [mim, 'test', 'ffl_mm', 'mine.py', '--checkpoint',
         str(tmp_path / 'work' / 'epoch_1.pth'), '--work-dir',
         str(tmp_path / 'work')],
        cwd=str(tmp_path), env=dict(os.environ, OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    assert out.returncode == 0, out.stdout[-5000:]
    assert 'accuracy/fused_top1' in out.stdout
