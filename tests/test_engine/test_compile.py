# Copyright (c) ffl_mm contributors.
"""``compile=...``: the model's computation compiled, the same training.

``make test`` compiles with dynamo and AOT autograd (``aot_eager``: the
graph capture, the decompositions and the compiled backward, in seconds);
``make test-extras`` also with inductor, the default backend (which
generates and builds C++ kernels: most of a minute for a small model).
"""
import copy
import json
import os.path as osp

import pytest
import torch
from mmengine.optim import OptimWrapper

from conftest import REPO, TINY_DIGITS, shipped_config
from ffl_mm_analysis import benchmark as bench
from ffl_mm.engine.compile import (compile_model, compile_options,
                                   compiled_methods)
from ffl_mm.registry import MODELS

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


def _train_two_steps(model, data):
    wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    model.train()
    return [{k: float(v.detach()) for k, v in
             model.train_step(copy.deepcopy(data), wrapper).items()}
            for _ in range(2)]


def _compiled_matches_eager(backend, weight_atol=1e-5, config=MFEF):
    """Two training steps of MFEF (or ``config``'s model), compiled with
    ``backend`` and eager: the same losses, weights and predictions.

    The KD terms at full weight, set here: the ramp-up reads the epoch from
    the current MessageHub, which would otherwise be whatever an earlier
    test of the process left current (the failure of this test in a
    one-process run of the suite). ``weight_atol``: inductor's generated
    kernels sum in another order than eager PyTorch, and two SGD steps
    (lr 0.1, momentum 0.9) carry that float32 round-off into the weights.
    """
    import uuid

    from mmengine.logging import MessageHub
    cfg = shipped_config(config).model
    cfg.backbone.depth = 8  # a small graph: compile time
    MessageHub.get_instance(f'test_compile_{uuid.uuid4().hex}').update_info(
        'epoch', cfg.distill_loss.rampup)
    torch.manual_seed(0)
    eager = MODELS.build(cfg)
    eager.init_weights()
    compiled = copy.deepcopy(eager)
    name = type(eager).__name__
    assert compile_model(compiled, dict(backend=backend)) == \
        f'{name}._forward_all'
    assert compiled_methods(compiled) == ['_forward_all']
    data = bench.synthetic_batch(4, 32, 10)
    expected = _train_two_steps(eager, data)
    got = _train_two_steps(compiled, data)
    assert [sorted(step) for step in got] == \
        [sorted(step) for step in expected]
    for step_got, step_expected in zip(got, expected):
        for key, value in step_expected.items():
            assert step_got[key] == pytest.approx(value, rel=1e-4,
                                                  abs=1e-6), key
    for (name, a), b in zip(eager.state_dict().items(),
                            compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=weight_atol,
                                   msg=name)
    # predictions too (evaluation mode, another graph)
    eager.eval()
    compiled.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(eager(x).values(), compiled(x).values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_compiled_training_matches_eager():
    """Two MFEF training steps (MFEF's fused functions traced whole
    under the compiler) give the eager losses and weights."""
    _compiled_matches_eager('aot_eager')


@pytest.mark.extras
def test_inductor_training_matches_eager():
    _compiled_matches_eager('inductor', weight_atol=5e-5)


@pytest.mark.extras
@pytest.mark.parametrize('config', [
    'configs/clilr/clilr_resnet32x3_cifar100.py',  # the trunk's grad hook
    'configs/okddip/okddip_resnet32x4_digits.py',  # the attention
])
def test_clilr_and_okddip_compiled_train_like_eager(config):
    _compiled_matches_eager('aot_eager', config=config)


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


@pytest.mark.parametrize('config, options', [
    ('configs/ffl/ffl_resnet32x2_digits.py', {}),
    ('configs/mfef/mfef_resnet32x2_digits.py', {}),
    ('configs/dml/dml_resnet32x2_digits.py', {}),
    ('configs/dml/dml_resnet32x2_digits.py', dict(branch_update='one_by_one')),
    ('configs/one/one_resnet32x2_digits.py', {}),
    ('configs/clilr/clilr_resnet32x3_digits.py', {}),
    ('configs/okddip/okddip_resnet32x4_digits.py', {}),
])
def test_compile_covers_every_module_of_training(config, options,
                                                 monkeypatch):
    """Whatever a method's training step runs from images to the loss's
    inputs (backbones, heads, a teacher's modules such as OKDDip's
    attention) runs inside what ``compile`` compiles: a stand-in for
    ``torch.compile`` marks the compiled region, and every module with
    parameters checks the mark when it runs forward."""
    import ffl_mm.engine.compile as compile_module
    inside = []

    def stand_in(method, **options):
        def marked(*args, **kwargs):
            inside.append(True)
            try:
                return method(*args, **kwargs)
            finally:
                inside.pop()
        return marked

    monkeypatch.setattr(compile_module.torch, 'compile', stand_in)
    cfg = shipped_config(config).model
    cfg.backbone.depth = 8
    cfg.update(options)
    model = MODELS.build(cfg)
    compile_model(model, {})
    outside = set()

    def check(module, args):
        # a checkpointed region's rerun in backward (MFEF's pre-neck) is
        # part of the compiled backward under torch.compile
        in_backward = torch._C._current_graph_task_id() != -1
        if not inside and not in_backward:
            outside.add(type(module).__name__)

    for module in model.modules():
        if module is not model and \
                any(True for _ in module.parameters(recurse=False)):
            module.register_forward_pre_hook(check)
    _train_two_steps(model, bench.synthetic_batch(4, 32, 10))
    assert not outside, f'run outside the compiled methods: {outside}'
