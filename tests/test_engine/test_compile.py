# Copyright (c) ffl_mm contributors.
"""``compile=...``: the model's computation compiled, the same training.

``make test`` compiles with dynamo and AOT autograd (``aot_eager``: the
graph capture, the decompositions and the compiled backward, in seconds);
``make test-extras`` also with inductor, the default backend (which
generates and builds C++ kernels: most of a minute for a small model).
"""
import json
import os.path as osp

import pytest
import torch

from conftest import REPO, TINY_DIGITS, shipped_config
from ffl_mm.engine.compile import compile_model, compile_options
from helpers.conformance import check_compiled_matches_eager

MFEF = 'configs/mfef/mfef_resnet32x2_digits.py'


def test_compile_options():
    assert compile_options(None) is None
    assert compile_options(False) is None
    assert compile_options(True) == {}
    options = dict(backend='aot_eager')
    assert compile_options(options) == options
    assert compile_options(options) is not options
    with pytest.raises(TypeError, match="compile='yes'"):
        compile_options('yes')


def test_compiled_training_matches_eager():
    """Two MFEF training steps (its pre-neck chains recomputed in
    backward) compiled with aot_eager give the eager losses and weights;
    every method's: tests/test_models/test_classifiers/test_conformance.py (slow)."""
    check_compiled_matches_eager(shipped_config(MFEF))


@pytest.mark.extras
def test_inductor_training_matches_eager():
    check_compiled_matches_eager(shipped_config(MFEF), 'inductor',
                                 weight_atol=5e-5)


def test_compile_needs_a_classifier():
    with pytest.raises(TypeError,
                       match='has neither compile_targets nor extract_feat'):
        compile_model(torch.nn.Linear(2, 2), {})


@pytest.mark.e2e
def test_tools_train_and_test_compiled(tmp_path, run_in_process):
    """tools/train.py and tools/test.py with ``compile``: the model's
    computation is compiled (not MMEngine's train_step, whose compilation
    fails in the optimizer step), the work dir's config keeps the key.
    Dynamo's ``eager`` backend: the capture, not the code generation (the
    tests above), keeps this one short."""
    config = osp.join(REPO, 'configs/ffl/ffl_resnet32x2_digits.py')
    # two iterations, no validation: the test step compiles its own graph
    options = TINY_DIGITS + ['train_cfg.max_epochs=1',
                             'train_cfg.val_interval=2',
                             'train_dataloader.dataset.indices=32',
                             'compile.backend=eager']
    work = tmp_path / 'work'
    _, out = run_in_process('train.py', config, '--work-dir', work,
                            '--cfg-options', *options)
    assert 'compile: FFLClassifier._forward_all is compiled' in out
    assert 'Epoch(train) [1][2/2]' in out
    dumped = (work / 'ffl_resnet32x2_digits.py').read_text()
    assert "backend='eager'" in dumped
    metrics, out = run_in_process('test.py', config, work / 'epoch_1.pth',
                                  '--work-dir', work, '--cfg-options',
                                  *options)
    assert 'compile: FFLClassifier._forward_all is compiled' in out
    assert 0 <= metrics['accuracy/fused_top1'] <= 100
    json.dumps(metrics)
