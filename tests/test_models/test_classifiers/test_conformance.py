# Copyright (c) ffl_mm contributors.
"""The checks every method passes, run over every registered method class
(found from the registry and the configs folder, each on its demo config:
nothing here names a method). ``make test`` runs the fast rows; the rows marked ``slow`` (ONNX
Runtime, compile against eager, two gloo ranks, resume through
tools/train.py) run in ``make test-slow``, which ``.ci/run`` runs after
``make test``. A new method class with a ``configs/<method>/*_digits.py``
config gets every row by existing (test_toy_method_passes_the_suite)."""
import os
import sys

import pytest

from conftest import REPO, run_cmd
from helpers import conformance as c

METHODS = c.method_configs()
NAMES = sorted(METHODS)
#: the registered method classes at collection, before any test registers
#: one of its own
CLASSES = c.method_classes()


def _cfg(name):
    return c._config(METHODS[name])


def test_every_method_class_has_a_demo_config():
    """Every registered method class is checked: one of the configs the
    rows run on builds it."""
    from ffl_mm.registry import MODELS
    checked = {c._config(p).model.type for p in METHODS.values()}
    assert [n for n in CLASSES if n not in checked] == [], \
        'registered method classes with no configs/*/*_digits.py config'
    assert {MODELS.get(n).__name__ for n in checked} <= set(CLASSES)
    # the shipped ones at least: a floor, not the list the rows use
    assert len(METHODS) >= 7 and len(CLASSES) >= 6


@pytest.mark.parametrize('name', NAMES)
def test_trains(name):
    c.check_trains(_cfg(name))


@pytest.mark.parametrize('name', NAMES)
def test_every_output_predicts(name):
    c.check_predict_modes(_cfg(name))


@pytest.mark.parametrize('name', NAMES)
def test_students_and_fused_export_to_mmpretrain(name):
    c.check_exports(_cfg(name))


@pytest.mark.parametrize('name', NAMES)
def test_compile_covers_every_module_of_training(name, monkeypatch):
    c.check_compile_covers_training(_cfg(name), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_onnx_runtime_gives_pytorchs_logits(name, tmp_path):
    pytest.importorskip('onnxruntime')
    c.check_onnx(_cfg(name), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_compiled_training_matches_eager(name):
    c.check_compiled_matches_eager(_cfg(name))


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_two_gloo_ranks_step_as_one_process(name, tmp_path):
    c.check_two_gloo_ranks_step_as_one_process(METHODS[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_resume_is_bit_exact(name, tmp_path, run_in_process):
    c.check_resume_is_exact(METHODS[name], tmp_path, run_in_process)


def _rows(slow):
    """The number of rows (tests parametrized by method) of a tier."""
    rows = 0
    for name, fn in globals().items():
        marks = getattr(fn, 'pytestmark', [])
        if name.startswith('test_') and (
                'slow' in {m.name for m in marks}) == slow and any(
                    m.name == 'parametrize' and m.args[0] == 'name'
                    for m in marks):
            rows += 1
    return rows


TOY_METHOD = '''
import torch

from ffl_mm.models.classifiers import MultiBranchClassifier
from ffl_mm.registry import MODELS


@MODELS.register_module()
class ToyMaxClassifier(MultiBranchClassifier):
    """Branches taught by the elementwise max of their logits, an
    untrained teacher."""

    teacher_output = 'toy_teacher'

    def distill_teacher(self, branch_logits, others, data_samples):
        return torch.stack(branch_logits).max(dim=0).values
'''

TOY_CONFIG = '''
_base_ = [
    '{repo}/configs/_base_/models/cifar-resnet32x2.py',
    '{repo}/configs/_base_/datasets/digits_bs64.py',
    '{repo}/configs/_base_/schedules/digits_bs64.py',
    '{repo}/configs/_base_/default_runtime_digits.py',
]
custom_imports = dict(imports=['ffl_mm', 'ffl_mm.engine.compat',
                               'toy_method'], allow_failed_imports=False)
model = dict(
    type='ToyMaxClassifier', head=dict(num_classes=10),
    distill_loss=dict(type='TeacherKDLoss', rampup=None))
'''


@pytest.mark.e2e
@pytest.mark.parametrize('tier', [
    'not slow', pytest.param('slow', marks=pytest.mark.slow)])
def test_toy_method_passes_the_suite(tier, tmp_path):
    """A method written outside the repository, one class and one config
    and nothing else, is found and passes every row of this suite."""
    (tmp_path / 'toy_method.py').write_text(TOY_METHOD)
    config = tmp_path / 'toy_max_resnet32x2_digits.py'
    config.write_text(TOY_CONFIG.format(repo=REPO))
    env = {c.EXTRA_CONFIGS: str(config),
           'PYTHONPATH': os.pathsep.join(
               [str(tmp_path), *filter(None, [os.environ.get(
                   'PYTHONPATH')])])}
    _, out = run_cmd([sys.executable, '-m', 'pytest', '-q', '-p',
                      'no:cacheprovider', '-m', tier, '-k', 'toy_max',
                      __file__],
                     env=env, timeout=900)
    assert f'{_rows(slow=tier == "slow")} passed' in out, out


@pytest.mark.parametrize('name', NAMES)
def test_the_branches_are_probed_once_per_build(name, monkeypatch):
    """One run of the branches on the probe fills in every inferred
    channel count (the heads', a fusion neck's, a gate's, an
    attention's)."""
    from ffl_mm.models.classifiers import channel_probe
    calls = []
    probe = channel_probe.probe_branches

    def counted(*args, **kwargs):
        calls.append(kwargs.get('need_maps'))
        return probe(*args, **kwargs)

    monkeypatch.setattr(channel_probe, 'probe_branches', counted)
    c.build(_cfg(name))
    assert len(calls) == 1, calls
