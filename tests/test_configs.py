# Copyright (c) ffl_mm contributors.
"""Every shipped config, and every config snippet of the docs, builds
everything MMEngine's Runner builds from it, each in the registry scope the
Runner builds it in: the model, hooks and visualiser (``Runner.from_cfg``),
the train/val/test loops with their data loaders, data sets (on stand-in
files of the config's own format) and evaluators, the optimizer wrapper and
parameter schedulers, and the TTA model with its pipeline. One sample of
every data set goes through its whole pipeline.

``_scope_`` tags come from inheritance (every dict inherited through
``mmpretrain::`` carries ``_scope_='mmpretrain'``) and are invisible in the
file a user reads; this test is what notices one that hides an ffl_mm
type."""
import copy
import glob
import os.path as osp
import re
import uuid

import pytest
from mmengine.config import Config

import ffl_mm  # noqa: F401  (the ffl_mm:: config scope)
from conftest import REPO, point_at_standins, shipped_config
from helpers.doc_snippets import SNIPPETS

CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    if '_base_' not in p)
CONFIG_SNIPPETS = [p for p in SNIPPETS if p.values[0] == 'config']


def build_what_the_runner_builds(cfg, work_dir):
    """Build every component of ``cfg`` as MMEngine's Runner (and, for
    ``tta_model``, the tools' ``--tta``) does; return ``{component: error}``
    for those that fail, so that one run names them all."""
    from mmengine.dataset import Compose
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'build_{uuid.uuid4().hex}'
    errors = {}
    try:
        # model, hooks, visualizer, logger, in the config's default scope
        runner = Runner.from_cfg(cfg)
    except Exception as error:  # noqa: BLE001 (every failure is reported)
        return {'Runner.from_cfg': f'{type(error).__name__}: {error}'}

    def attempt(name, build):
        try:
            return build()
        except Exception as error:  # noqa: BLE001
            errors[name] = f'{type(error).__name__}: {error}'

    loops = {}
    for name, loop_key, build in (
            ('train', '_train_loop', runner.build_train_loop),
            ('val', '_val_loop', runner.build_val_loop),
            ('test', '_test_loop', runner.build_test_loop)):
        if getattr(runner, loop_key) is not None:
            loops[name] = attempt(f'{name} loop (data set, evaluator)',
                                  lambda b=build, k=loop_key: b(
                                      getattr(runner, k)))
            if loops[name] is not None:  # as Runner.train() keeps it
                setattr(runner, loop_key, loops[name])
    for name, loop in loops.items():
        if loop is not None:  # every transform on one real sample
            attempt(f'{name} pipeline on one sample',
                    lambda lp=loop: lp.dataloader.dataset[0])
    wrapper = attempt('optim_wrapper',
                      lambda: runner.build_optim_wrapper(runner.optim_wrapper))
    if wrapper is not None and cfg.get('param_scheduler') is not None:
        runner.optim_wrapper = wrapper
        attempt('param_scheduler',
                lambda: runner.build_param_scheduler(cfg.param_scheduler))
    if cfg.get('tta_model') is not None:
        # what tools/test.py --tta builds (ours and MMPretrain's)
        with DefaultScope.overwrite_default_scope(runner.default_scope
                                                  .scope_name):
            attempt('tta_model', lambda: MODELS.build(
                dict(**cfg.tta_model, module=cfg.model)))
            if cfg.get('tta_pipeline') is not None:
                loader = copy.deepcopy(cfg.test_dataloader)
                loader.dataset.pipeline = cfg.tta_pipeline
                attempt('tta_pipeline on one sample', lambda: Runner.
                        build_dataloader(loader).dataset[0])
    return errors


@pytest.fixture
def quick_runner(monkeypatch):
    """Two costs that build nothing, skipped: the Runner's formatted copies
    of the config (yapf; the log and the work_dir) and the full garbage
    collection that MMEngine's data sets run after serialising their
    lists (it scales with everything this test process holds)."""
    from mmengine.dataset import base_dataset
    from mmengine.runner import Runner
    monkeypatch.setattr(Runner, 'dump_config', lambda self: None)
    monkeypatch.setattr(Config, 'pretty_text', property(lambda self: ''))
    monkeypatch.setattr(base_dataset.gc, 'collect', lambda: 0)


@pytest.mark.parametrize('config', CONFIGS)
def test_shipped_config_builds_what_the_runner_builds(config, standin_data,
                                                      tmp_path,
                                                      quick_runner):
    cfg = point_at_standins(shipped_config(config), standin_data)
    assert build_what_the_runner_builds(cfg, tmp_path) == {}


@pytest.mark.parametrize('kind, code', CONFIG_SNIPPETS)
def test_config_snippet_builds_what_the_runner_builds(kind, code,
                                                      standin_data, tmp_path,
                                                      quick_runner):
    path = tmp_path / 'snippet.py'
    path.write_text(code)
    cfg = point_at_standins(Config.fromfile(str(path)), standin_data)
    assert build_what_the_runner_builds(cfg, tmp_path / 'work') == {}


def test_every_shipped_config_is_checked():
    """The list above is the configs folder: a new method's folder is
    picked up without a change here."""
    folders = {re.split(r'[\\/]', c)[1] for c in CONFIGS}
    assert {'ffl', 'mfef', 'dml', 'one', 'baselines'} <= folders
    assert len(CONFIGS) >= 30


def test_no_shipped_config_puts_an_ffl_mm_type_in_another_scope():
    """The static check that tools/train.py and tools/test.py run before
    anything is built agrees with the builds above on every shipped
    config."""
    from ffl_mm.tools_support.config_scopes import misplaced_types
    assert {c: misplaced_types(shipped_config(c)) for c in CONFIGS} == \
        {c: [] for c in CONFIGS}


USER_CONFIG = """_base_ = [
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'ffl_mm::_base_/default_runtime.py',
]
val_evaluator = dict({fix}type='{type}', topk=(1, 5))
test_evaluator = val_evaluator
"""


def _user_config(tmp_path, fix='', type_='MultiBranchAccuracy'):
    path = tmp_path / f'user_{uuid.uuid4().hex[:6]}.py'
    path.write_text(USER_CONFIG.format(fix=fix, type=type_))
    return Config.fromfile(str(path))


def _build_evaluator(cfg):
    """As ``Runner.build_evaluator``, in the config's default scope."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return Evaluator(cfg.val_evaluator)


def test_user_config_over_mmpretrain_bases_gets_an_error_naming_the_scope(
        tmp_path):
    """A user's evaluator over one inherited from MMPretrain's data bases:
    the Runner would fail at the first validation with MMEngine's KeyError;
    the check names the key, the inherited scope and both fixes, and each
    fix builds."""
    from ffl_mm.tools_support.config_scopes import (ConfigScopeError,
                                             check_config_scopes)
    cfg = _user_config(tmp_path)
    assert cfg.val_evaluator._scope_ == 'mmpretrain'  # the hidden tag
    with pytest.raises(KeyError, match='not in the mmpretrain::metric'):
        _build_evaluator(cfg)
    with pytest.raises(ConfigScopeError) as info:
        check_config_scopes(cfg)
    message = str(info.value)
    assert "val_evaluator: type='MultiBranchAccuracy' would be built in " \
        "scope 'mmpretrain'" in message
    assert "test_evaluator: type='MultiBranchAccuracy'" in message
    assert "add _scope_='ffl_mm'" in message
    assert "type='ffl_mm.MultiBranchAccuracy'" in message
    for fixed in (_user_config(tmp_path, fix="_scope_='ffl_mm', "),
                  _user_config(tmp_path,
                               type_='ffl_mm.MultiBranchAccuracy')):
        check_config_scopes(fixed)
        metric, = _build_evaluator(fixed).metrics
        assert type(metric).__name__ == 'MultiBranchAccuracy'
    # MMPretrain's own types under MMPretrain's tag are fine
    check_config_scopes(_user_config(tmp_path, type_='Accuracy'))


def test_tools_refuse_a_misplaced_type_before_building(tmp_path,
                                                       run_in_process):
    path = tmp_path / 'user.py'
    path.write_text(USER_CONFIG.format(fix='', type='MultiBranchAccuracy'))
    work = tmp_path / 'work'
    for tool, argv in (('train.py', [path, '--work-dir', work]),
                       ('test.py', [path, tmp_path / 'none.pth',
                                    '--work-dir', work])):
        with pytest.raises(KeyError, match="_scope_='ffl_mm'"):
            run_in_process(tool, *argv)
        assert not work.exists()
