# Copyright (c) ffl_mm contributors.
"""The conformance checks every method passes (``tests/test_models/
test_conformance.py`` runs them on every method's demo config).

A method is found, not listed: every ``configs/*/*_digits.py`` whose model
is a class registered in ffl_mm's ``MODELS`` that subclasses
``MultiBranchClassifier`` (FFL and MFEF: one class, two configs), and
every such class must have one. Extra
configs (a method written outside this repository) come from the
environment variable ``FFL_MM_CONFORMANCE_CONFIGS`` (paths separated by
``os.pathsep``); their ``custom_imports`` register their classes.
"""
import copy
import glob
import os
import os.path as osp
import random
import uuid
from typing import Dict, List

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EXTRA_CONFIGS = 'FFL_MM_CONFORMANCE_CONFIGS'


def _config(path):
    """The config at ``path``: a shipped one parsed once per session
    (``conftest.shipped_config``), any other parsed now."""
    from mmengine.config import Config
    if osp.abspath(path).startswith(osp.join(REPO, 'configs') + osp.sep):
        from conftest import shipped_config
        return shipped_config(path)
    return Config.fromfile(path)


def method_configs() -> Dict[str, str]:
    """``{config name: path}`` of every demo config (``configs/*/*_digits.py``
    and the extra ones) whose model is a registered method class."""
    import ffl_mm  # noqa: F401
    from ffl_mm.models.classifiers import MultiBranchClassifier
    from ffl_mm.registry import MODELS
    paths = sorted(p for p in glob.glob(
        osp.join(REPO, 'configs', '*', '*_digits.py')) if '_base_' not in p)
    paths += [p for p in os.environ.get(EXTRA_CONFIGS, '').split(os.pathsep)
              if p]
    found = {}
    for path in paths:  # parsing imports a config's custom_imports
        cls = MODELS.get(_config(path).model.type)
        if isinstance(cls, type) and issubclass(cls, MultiBranchClassifier):
            found[osp.splitext(osp.basename(path))[0]] = path
    return found


def method_classes() -> List[str]:
    """Every method class registered in ffl_mm's ``MODELS`` (the subclasses
    of ``MultiBranchClassifier``)."""
    from ffl_mm.models.classifiers import MultiBranchClassifier
    from ffl_mm.registry import MODELS
    return sorted(
        name for name, cls in MODELS.module_dict.items()
        if isinstance(cls, type) and issubclass(cls, MultiBranchClassifier)
        and cls is not MultiBranchClassifier)


def build(cfg, seed=0, **model_changes):
    """The model the Runner builds from ``cfg`` (weights initialised with
    ``seed``), in ffl_mm's scope."""
    from mmengine.registry import DefaultScope

    from ffl_mm.apis.model_cfg import runner_model_cfg
    from ffl_mm.registry import MODELS
    model_cfg = runner_model_cfg(cfg)
    model_cfg.update(copy.deepcopy(model_changes))
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        torch.manual_seed(seed)
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def loader_batch(cfg, split='train', size=4, seed=0):
    """A batch of ``size`` images as the config's ``split`` loader gives it
    (its pipeline: KDCL's views too)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg[f'{split}_dataloader'])
    loader.update(batch_size=size, num_workers=0, persistent_workers=False)
    loader.dataset.indices = size
    loader.sampler = dict(type='DefaultSampler', shuffle=False)
    import numpy as np
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        # the transforms draw from numpy's and Python's global generators
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return next(iter(Runner.build_dataloader(loader, seed=seed)))


def noise_images(batch, seed=0):
    """``batch`` with every image replaced by uniform random pixels of the
    same shape and dtype (views kept as views): no ties (the digits'
    black background) for a compiled kernel's other summation order to
    break differently from eager PyTorch's."""
    gen = torch.Generator().manual_seed(seed)

    def noise(x):
        if isinstance(x, torch.Tensor):
            return torch.randint(0, 256, x.shape, dtype=x.dtype,
                                 generator=gen)
        return type(x)(noise(v) for v in x)

    return dict(batch, inputs=noise(batch['inputs']))


def settled(model, cfg):
    """``model`` in evaluation mode, its BN statistics moved by one
    training forward (as after training)."""
    model.train()
    with torch.no_grad():
        data = model.data_preprocessor(loader_batch(cfg, 'train'), True)
        model(data['inputs'], mode='tensor')
    return model.eval()


def check_trains(cfg):
    """Loss and backward: every branch's cross-entropy is a term, every
    term finite, every trainable parameter gets a gradient."""
    model = build(cfg).train()
    data = model.data_preprocessor(loader_batch(cfg), True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    n = model.num_branches
    assert {f'loss_ce_branch{i}' for i in range(n)} <= set(losses), losses
    assert any(key.startswith('loss_kd') for key in losses), losses
    loss, _ = model.parse_losses(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    loss.backward()
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not missing, f'no gradient: {missing}'


def check_predict_modes(cfg):
    """Every output can be what it predicts: ``pred_score`` is the
    softmax of that output's logits, ``extract_feat`` gives every stage."""
    model = settled(build(cfg), cfg)
    data = model.data_preprocessor(loader_batch(cfg, 'val', 3), False)
    with torch.no_grad():
        logits = model(data['inputs'])
    assert set(logits) == set(model.output_names)
    for name in model.output_names:
        other = build(cfg, test_cfg=dict(predict=name)).eval()
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            samples = other(data['inputs'], copy.deepcopy(
                data['data_samples']), mode='predict')
            for stage in ('backbone', 'neck', 'pre_logits'):
                assert isinstance(other.extract_feat(data['inputs'], stage),
                                  tuple), (name, stage)
        scores = torch.stack([s.pred_score for s in samples])
        torch.testing.assert_close(scores, logits[name].softmax(dim=1),
                                   msg=name)
        assert samples[0].branch_scores.shape == (
            model.num_branches, logits[name].size(1))


def exported_models(cfg, model):
    """``[(output, plain model, its exported config)]``: every branch as
    an MMPretrain ``ImageClassifier`` and, with a fused classifier, the
    fused model, each built from its exported config and loaded."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

    from ffl_mm.apis import export
    exported = []
    parts = [(f'branch{i}', export.export_branch(cfg, model, i))
             for i in range(model.num_branches)]
    if model.with_fusion:
        parts.append(('fused', export.export_fused(cfg, model)))
    for output, (out_cfg, state) in parts:
        with DefaultScope.overwrite_default_scope(out_cfg['default_scope']):
            plain = MMPRETRAIN_MODELS.build(copy.deepcopy(out_cfg['model']))
        plain.load_state_dict(state)
        exported.append((output, plain.eval(), out_cfg))
    return exported


def check_exports(cfg):
    """Each student (and the fused model) exports to a model that loads in
    MMPretrain with the same logits on the test loader's images."""
    model = settled(build(cfg), cfg)
    raw = loader_batch(cfg, 'val', 3)
    data = model.data_preprocessor(copy.deepcopy(raw), False)
    with torch.no_grad():
        logits = model(data['inputs'])
    for output, plain, out_cfg in exported_models(cfg, model):
        if output.startswith('branch'):
            assert type(plain).__name__ == 'ImageClassifier'
            assert type(plain.data_preprocessor).__name__ == \
                'ClsDataPreprocessor'
        with torch.no_grad():
            got = plain(plain.data_preprocessor(copy.deepcopy(raw),
                                                False)['inputs'])
        if isinstance(got, dict):
            got = got[output]
        torch.testing.assert_close(got, logits[output], msg=output)


def check_compile_covers_training(cfg, monkeypatch):
    """Whatever the training step runs from images to the loss's inputs
    runs inside what ``compile`` compiles: a stand-in for
    ``torch.compile`` marks the compiled region, and every module with
    parameters checks the mark when it runs forward."""
    import ffl_mm.engine.compile as compile_module
    from mmengine.optim import OptimWrapper
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
    model = build(cfg)
    compile_module.compile_model(model, {})
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
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.train()
    model.train_step(loader_batch(cfg), wrapper)
    assert not outside, f'run outside the compiled methods: {outside}'


def two_steps(model, data):
    """Two SGD steps (lr 0.1, momentum 0.9) of ``model.train_step`` on
    ``data``; the logged values of each."""
    from mmengine.optim import OptimWrapper
    wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    model.train()
    return [{k: float(v.detach()) for k, v in
             model.train_step(copy.deepcopy(data), wrapper).items()}
            for _ in range(2)]


def check_compiled_matches_eager(cfg, backend='aot_eager', weight_atol=1e-5,
                                 small=True):
    """Two training steps compiled with ``backend`` and eager, on a batch
    of the loader's shape with random pixels (:func:`noise_images`): the
    same losses, weights and predictions. The KD terms at full weight (the
    ramp-up reads the epoch from the current MessageHub). ``small``: CIFAR
    ResNet-8 branches (compile time). ``weight_atol``: inductor's kernels
    sum in another order than eager PyTorch."""
    import pytest
    from mmengine.logging import MessageHub

    from ffl_mm.engine.compile import compile_model, compiled_methods
    changes = {}
    if small and cfg.model.backbone.get('depth'):
        changes['backbone'] = dict(cfg.model.backbone, depth=8)
    rampup = (cfg.model.get('distill_loss') or {}).get('rampup') or 0
    MessageHub.get_instance(f'conformance_{uuid.uuid4().hex}').update_info(
        'epoch', rampup)
    eager = build(cfg, **changes)
    compiled = copy.deepcopy(eager)
    targets = compile_model(compiled, dict(backend=backend))
    assert compiled_methods(compiled) == list(type(eager).compile_targets)
    assert targets.startswith(type(eager).__name__)
    data = noise_images(loader_batch(cfg))
    expected = two_steps(eager, data)
    got = two_steps(compiled, data)
    assert [sorted(s) for s in got] == [sorted(s) for s in expected]
    for step_got, step_expected in zip(got, expected):
        for key, value in step_expected.items():
            assert step_got[key] == pytest.approx(value, rel=1e-4,
                                                  abs=1e-6), key
    for (name, a), b in zip(eager.state_dict().items(),
                            compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=weight_atol,
                                   msg=name)
    eager.eval()
    compiled.eval()
    x = eager.data_preprocessor(noise_images(loader_batch(cfg, 'val',
                                                          3)))['inputs']
    with torch.no_grad():
        for a, b in zip(eager(x).values(), compiled(x).values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def check_onnx(cfg, tmp_path):
    """The deployed outputs (branch 0, a role's branch such as OKDDip's
    leader, and the fused model) export to ONNX and ONNX Runtime gives
    PyTorch's logits."""
    from ffl_mm.apis import onnx_export as ox
    model = settled(build(cfg), cfg)
    roles = type(model).output_roles(model.num_branches)
    wanted = {'branch0', 'fused', *roles}
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    checked = []
    for output, plain, _ in exported_models(cfg, model):
        if output not in wanted:
            continue
        module = ox.ImagesToLogits(
            plain, output if output == 'fused' else None)
        path = str(tmp_path / f'{output}.onnx')
        ox.export_onnx(module.eval(), ox.graph_input(images[:2]), path)
        assert ox.check_onnx(path, images,
                             ox.reference_logits(module, images)) <= 1e-4
        checked.append(output)
    assert 'branch0' in checked


DDP_STEP = '''
import sys
import torch
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from helpers.conformance import _config, build, two_steps
from mmengine.model import MMDistributedDataParallel

dist.init_process_group('gloo')
cfg = _config({config!r})
model = build(cfg)
ddp = MMDistributedDataParallel(
    module=model, device_ids=None, broadcast_buffers=False,
    find_unused_parameters=cfg.get('find_unused_parameters', False))
data = torch.load({batch!r}, weights_only=False)
logs = two_steps(ddp, data)
if dist.get_rank() == 0:
    torch.save(dict(state=model.state_dict(), logs=logs), {out!r})
dist.barrier()
dist.destroy_process_group()
'''


def check_two_gloo_ranks_step_as_one_process(cfg_path, tmp_path):
    """Two training steps of MMEngine's DDP wrapper on two gloo ranks, each
    given the same batch (so the averaged gradients are one process's):
    the weights and logged terms of one process's steps."""
    import sys

    from conftest import free_port, run_cmd
    cfg = _config(cfg_path)
    batch = str(tmp_path / 'batch.pth')
    torch.save(loader_batch(cfg), batch)
    out = str(tmp_path / 'ranks.pth')
    script = tmp_path / 'ddp_step.py'
    script.write_text(DDP_STEP.format(
        tests=osp.join(REPO, 'tests'), config=str(cfg_path), batch=batch,
        out=out))
    run_cmd([sys.executable, '-m', 'torch.distributed.run',
             '--nproc_per_node', '2', '--master_port', free_port(),
             str(script)], env=dict(
                 PYTHONPATH=os.pathsep.join(
                     p for p in (os.environ.get('PYTHONPATH'),) if p)))
    ranks = torch.load(out, weights_only=False)
    model = build(cfg)
    logs = two_steps(model, torch.load(batch, weights_only=False))
    assert ranks['logs'] == logs
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ranks['state'][name], value, rtol=0,
                                   atol=1e-6, msg=name)


def check_resume_is_exact(cfg_path, tmp_path, run_in_process):
    """tools/train.py: two epochs straight, and one epoch then
    ``--resume`` for the second, end with equal weights."""
    from conftest import TINY_DIGITS
    options = [*TINY_DIGITS, 'train_dataloader.dataset.indices=16',
               'train_dataloader.batch_size=8', 'train_cfg.val_interval=3',
               'default_hooks.checkpoint.interval=1']
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    run_in_process('train.py', cfg_path, '--work-dir', straight,
                   '--cfg-options', *options, 'train_cfg.max_epochs=2')
    run_in_process('train.py', cfg_path, '--work-dir', resumed,
                   '--cfg-options', *options, 'train_cfg.max_epochs=1')
    run_in_process('train.py', cfg_path, '--work-dir', resumed, '--resume',
                   '--cfg-options', *options, 'train_cfg.max_epochs=2')
    a = torch.load(straight / 'epoch_2.pth', weights_only=False)
    b = torch.load(resumed / 'epoch_2.pth', weights_only=False)
    assert a['state_dict'].keys() == b['state_dict'].keys()
    different = [k for k, v in a['state_dict'].items()
                 if not torch.equal(v, b['state_dict'][k])]
    assert not different, f'differ after resuming: {different}'
