# Copyright (c) ffl_mm contributors.
"""The benchmark tool runs and reports every field (not a timing test)."""
import copy
import json
import os.path as osp

import pytest
import torch

from conftest import REPO, shipped_config
from ffl_mm.apis.model_cfg import input_size
from ffl_mm.registry import MODELS
from helpers.conformance import method_configs
from helpers.lab import lab

bench = lab('benchmark')

FFL = f'{REPO}/configs/ffl/ffl_resnet32x2_digits.py'


@MODELS.register_module(force=True)
class _BranchesOnlyLoss(torch.nn.Module):
    """A distillation loss the reference step does not know."""

    needs_teacher = False
    target_keys = ()

    def forward(self, branch_logits, teacher_logits=None):
        return {}


def test_variant_configs():
    cfg = shipped_config('configs/mfef/mfef_resnet32x2_digits.py')
    ce = bench.variant_model_cfg(cfg.model, 'ce_only')
    # the base class: the branches without a method's parts
    assert ce.type == 'MultiBranchClassifier'
    assert 'fusion_neck' not in ce and 'fusion_pre_neck' not in ce
    assert 'distill_loss' not in ce and ce.shared_stages == 2
    single = bench.variant_model_cfg(cfg.model, 'single')
    assert single.type == 'ImageClassifier'
    assert single.backbone.type == 'CIFARResNet'
    assert bench.variant_model_cfg(cfg.model, 'model') == cfg.model
    with pytest.raises(ValueError, match='unknown variant'):
        bench.variant_model_cfg(cfg.model, 'fast')
    # MFEF without its chain: FFL on the same branches
    assert bench.optional_variants(cfg.model) == ['without_pre_neck']
    bare = bench.variant_model_cfg(cfg.model, 'without_pre_neck')
    assert bare.fusion_pre_neck is None
    assert bare.fusion_neck == cfg.model.fusion_neck
    assert bare.distill_loss == cfg.model.distill_loss
    ffl = shipped_config(FFL)
    assert bench.optional_variants(ffl.model) == []
    with pytest.raises(ValueError, match='no fusion_pre_neck'):
        bench.variant_model_cfg(ffl.model, 'without_pre_neck')
    assert input_size(cfg) == 32
    # DML and ONE: their floor is the same branches with cross-entropy only,
    # updated together, without ONE's gate
    for path in ('configs/dml/dml_resnet32x2_digits.py',
                 'configs/one/one_resnet32x2_digits.py'):
        method = shipped_config(path)
        ce = bench.variant_model_cfg(method.model, 'ce_only')
        assert ce.type == 'MultiBranchClassifier'
        assert 'ensemble_head' not in ce and 'distill_loss' not in ce
        assert 'branch_update' not in ce  # the base: updated together
        assert ce.shared_stages == method.model.shared_stages
    imagenet = shipped_config('configs/ffl/ffl_resnet34x2_imagenet.py')
    assert input_size(imagenet) == 224


def test_interleaving_and_summary():
    order = []

    class Fake:

        def __init__(self, name):
            self.name = name

        def step(self, data):
            order.append(self.name)

    ticks = iter(range(100))
    times = bench.time_interleaved({
        'a': Fake('a'),
        'b': Fake('b'),
        'c': Fake('c')
    },
                                   None,
                                   iters=3,
                                   warmup=1,
                                   clock=lambda: next(ticks))
    # each round starts one variant later
    assert order == list('abc' 'bca' 'cab' 'abc')
    assert times == {'a': [1, 1, 1], 'b': [1, 1, 1], 'c': [1, 1, 1]}
    stats = bench.summary([0.010, 0.030, 0.020, 0.040])
    assert stats['median_ms'] == pytest.approx(25.0)
    assert stats['min_ms'] == pytest.approx(10.0)
    assert stats['max_ms'] == pytest.approx(40.0)
    # every round's time, in the order the rounds ran (for paired analyses
    # of the JSON: rounds of one index ran a moment apart)
    assert stats['rounds_ms'] == pytest.approx([10.0, 30.0, 20.0, 40.0])
    results = {
        'model': dict(time=dict(median_ms=110.0), memory=dict(peak_bytes=105)),
        'ce_only': dict(time=dict(median_ms=100.0),
                        memory=dict(peak_bytes=100)),
        'single': dict(time=dict(median_ms=80.0), memory={}),
    }
    r = bench.ratios(results, num_branches=2)
    assert r['ratio_time_model_vs_reference'] is None
    assert r['ratio_time_vs_ce_only'] == pytest.approx(1.1)
    assert r['ratio_time_vs_separate'] == pytest.approx(110 / 160)
    assert r['ratio_memory_vs_ce_only'] == pytest.approx(1.05)


def test_paired_ratio():
    # the machine halves its speed after round 2: each round's ratio is
    # still 1.1, the ratio of the medians is not
    model = [1.1, 1.1, 2.2, 2.2, 2.2]
    base = [1.0, 1.0, 2.0, 2.0, 2.0]
    assert bench.paired_ratio(model, base) == pytest.approx(1.1)
    assert bench.paired_ratio([3.0, 1.0, 2.0], [1.0, 1.0, 1.0]) == 2.0
    results = {name: dict(time=dict(median_ms=m)) for name, m in
               (('model', 2.2), ('ce_only', 2.0), ('single', 1.0),
                ('model_reference', 2.0), ('single_reference', 1.0))}
    times = dict(model=model, model_reference=base, single=[1.0],
                 single_reference=[0.8])
    times['ce_only'] = [1.0, 1.0, 2.0, 2.0, 2.0]
    r = bench.ratios(results, 2, times)
    assert r['ratio_time_vs_ce_only_paired'] == pytest.approx(1.1)
    assert r['ratio_time_model_vs_reference'] == pytest.approx(1.1)
    assert r['ratio_time_model_vs_reference_paired'] == pytest.approx(1.1)
    assert r['ratio_time_single_vs_reference_paired'] == pytest.approx(1.25)
    assert 'ratio_time_compiled_vs_eager' not in r
    # --compile: the same model eager in the same rounds
    results['model_eager'] = dict(time=dict(median_ms=4.4))
    times['model_eager'] = [2.2, 2.2, 4.4, 4.4, 4.4]
    r = bench.ratios(results, 2, times)
    assert r['ratio_time_compiled_vs_eager'] == pytest.approx(0.5)
    assert r['ratio_time_compiled_vs_eager_paired'] == pytest.approx(0.5)
    assert 'ratio_time_pre_neck' not in r
    # a model with pre-necks: a = 1.1 a-, a- = 1.0 b, round by round
    results['without_pre_neck'] = dict(time=dict(median_ms=2.0))
    times['without_pre_neck'] = [1.0, 1.0, 2.0, 2.0, 2.0]
    r = bench.ratios(results, 2, times)
    assert r['ratio_time_pre_neck'] == pytest.approx(1.1)
    assert r['ratio_time_pre_neck_paired'] == pytest.approx(1.1)
    assert r['ratio_time_without_pre_neck_vs_ce_only'] == pytest.approx(1.0)
    assert r['ratio_time_without_pre_neck_vs_ce_only_paired'] == \
        pytest.approx(1.0)


def test_median_interval():
    # 30 rounds: the 10th and 21st values, P = 1 - 2 P(Bin(30, 1/2) <= 9)
    assert bench.median_interval(list(range(30, 0, -1))) == [10, 21]
    # 6 values: P(Bin(6, 1/2) <= 0) = 1/64 <= 2.5 %, P(<= 1) = 7/64 is not
    assert bench.median_interval([6, 1, 5, 2, 4, 3]) == [1, 6]
    # 5 values: even the range covers the median with 15/16 < 95 % only
    assert bench.median_interval([1, 2, 3, 4, 5]) is None
    assert bench.median_interval([1, 2, 3, 4, 5], confidence=0.9) == [1, 5]
    times = dict(model=[1.1] * 5 + [1.3] * 5 + [1.0] * 5, ce_only=[1.0] * 15)
    fields = bench.paired_fields(times, 'model', 'ce_only', 'r')
    # per round 1.0 (5), 1.1 (5), 1.3 (5): 15 values, the 4th and 12th
    assert fields['r_paired'] == pytest.approx(1.1)
    assert fields['r_paired_ci'] == pytest.approx([1.0, 1.3])
    assert bench.paired_fields(None, 'model', 'ce_only', 'r') == {
        'r_paired': None, 'r_paired_ci': None}


def test_benchmark_tool_writes_every_field(tmp_path, run_in_process):
    """The tool in this process; the memory of each variant measured here
    by the function its per-variant child process calls."""
    out = tmp_path / 'bench.json'
    run_in_process('analysis_tools/benchmark.py', FFL, '--batch-size', '4',
                   '--iters', '2', '--warmup', '1', '--loop-overhead',
                   '--no-memory', '--json', out)
    result = json.loads(out.read_text())
    cfg = shipped_config(FFL)
    data = bench.synthetic_batch(4, 32, 10)
    assert set(result['variants']) == {
        'model', 'ce_only', 'single', 'model_reference', 'single_reference'}
    reference = {name: result['variants'].pop(f'{name}_reference')
                 for name in ('model', 'single')}
    for name, variant in reference.items():
        assert variant['time']['n'] == 2
        assert variant['params'] == result['variants'][name]['params']
        assert 'memory' not in variant
    for name, variant in result['variants'].items():
        assert variant['first_step_s'] > 0
        assert 'memory' not in variant
        variant['memory'] = bench.measure_memory(cfg, name, 'cpu', data)
    for key in ('ratio_time_vs_ce_only', 'ratio_memory_vs_ce_only',
                'ratio_time_vs_separate', 'machine', 'variants',
                'batch_size', 'num_branches', 'ratio_runner_vs_bare_loop',
                'ratio_time_model_vs_reference',
                'ratio_time_single_vs_reference',
                'ratio_time_model_vs_reference_paired',
                'ratio_time_vs_ce_only_paired_ci'):
        assert key in result, key
    # two rounds: too few for a 95 % interval of the median
    assert result['ratio_time_vs_ce_only_paired_ci'] is None
    assert result['batch_size'] == 4 and result['num_branches'] == 2
    assert result['reference_skipped'] is None
    for name in ('model', 'single'):
        assert result[f'ratio_time_{name}_vs_reference'] == pytest.approx(
            result['variants'][name]['time']['median_ms'] /
            reference[name]['time']['median_ms'])
    for variant in result['variants'].values():
        assert variant['time']['n'] == 2
        assert variant['time']['median_ms'] > 0
        memory = variant['memory']
        assert memory['kind'] == 'cpu_state_plus_step_allocations'
        assert memory['peak_bytes'] == memory['step_peak_bytes'] + \
            memory['state_bytes']
        # parameters and SGD momentum: 2 float32 copies (the gradients
        # are the step's own allocations)
        assert memory['state_bytes'] == 2 * 4 * variant['params']
        # at least the gradients, which live together at the end of
        # backward
        assert memory['step_peak_bytes'] > 4 * variant['params']
    assert result['variants']['model']['params'] == 831598
    assert result['loop_overhead']['runner']['n'] == 2
    assert result['loop_overhead']['bare']['n'] == 2
    assert result['loop_overhead']['bare_kind'] == 'hand_written'
    assert result['ratio_runner_vs_bare_loop'] > 0
    # run_in_process keeps the tuning off (FFL_MM_NO_MALLOC_TUNING=1)
    assert result['cpu_allocator_tuned'] is False
    # the fusion module and KD add activations over cross-entropy only
    assert result['variants']['model']['memory']['step_peak_bytes'] > \
        result['variants']['ce_only']['memory']['step_peak_bytes']
    assert result['variants']['single']['params'] == 466906
    assert result['machine']['device'] == 'cpu'


def test_peak_allocated_bytes_counts_what_lives_at_once():
    """Hand-counted: 4 MB and 2 MB live together, then 2 MB and 1 MB;
    a tensor made before the measurement does not count, freed or not;
    what checkpointing keeps for backward counts (the meter sees tensors
    however they are held)."""
    import torch
    import torch.utils.checkpoint as cp
    before = torch.empty(10**6)

    def steps():
        nonlocal before
        a = torch.empty(10**6)       # 4e6 bytes
        b = torch.empty(5 * 10**5)   # 2e6
        del a, before
        c = torch.empty(25 * 10**4)  # 1e6
        return b, c

    assert bench.peak_allocated_bytes(steps) == 6 * 10**6
    assert bench.peak_allocated_bytes(lambda: None) == 0
    x = torch.randn(1000, 100, requires_grad=True)
    layer = torch.nn.Sequential(torch.nn.Linear(100, 100), torch.nn.Tanh(),
                                torch.nn.Linear(100, 100), torch.nn.Tanh())
    kept = []
    plain = bench.peak_allocated_bytes(lambda: kept.append(layer(x)))
    recomputed = bench.peak_allocated_bytes(lambda: kept.append(
        cp.checkpoint(layer, x, use_reentrant=False)))
    # maps of 1000 x 100 floats (4e5 bytes). Plain: Tanh keeps its
    # output, the second Linear its input (the same map), so the first
    # tanh's map lives on while the second Linear's and Tanh's are made: 3.
    # Checkpointed: nothing is kept, each map dies once the next is made:
    # 2 at a time (the second Linear's and Tanh's), and checkpoint keeps
    # the CPU generator's state to replay
    assert plain == 3 * 4 * 10**5
    assert recomputed == 2 * 4 * 10**5 + torch.get_rng_state().numel()


def test_bare_step_does_the_work_of_train_step():
    """The bare loop trains exactly like ``train_step``: same weights."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from ffl_mm.registry import MODELS

    bare_train_step = lab('loop_overhead').bare_train_step
    cfg = shipped_config(FFL)
    data = bench.synthetic_batch(4, 32, 10)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        models.append(model.train())
    before = {k: v.clone() for k, v in models[0].state_dict().items()}
    wrappers = [build_optim_wrapper(m, cfg.optim_wrapper) for m in models]
    models[0].train_step(data, wrappers[0])
    bare_train_step(models[1], wrappers[1].optimizer, data)
    moved = 0
    for (name, a), b in zip(models[0].state_dict().items(),
                            models[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        moved += int(a.is_floating_point() and not torch.equal(
            a, before[name]))
    assert moved > 0


def test_interleaved_bare_loop_hook_timing():
    InterleavedBareLoopHook = lab('loop_overhead').InterleavedBareLoopHook
    ticks = iter(range(0, 1000, 1))
    calls = []
    hook = InterleavedBareLoopHook(calls.append, warmup=1,
                                   clock=lambda: next(ticks))
    for i in range(4):
        hook.after_train_iter(None, i, data_batch=i)
    assert calls == [0, 1, 2, 3]
    # each runner interval spans one clock tick, each bare step one tick
    assert hook.runner_times == [1, 1, 1]
    assert hook.bare_times == [1, 1, 1]


def test_cpu_allocator_tuning(monkeypatch):
    """The three mallopt calls, on a stand-in libc (the real one would
    change this process for the tests after it)."""
    import ctypes

    from ffl_mm.tools_support import cpu_allocator
    calls = []

    class FakeLibc:

        def mallopt(self, option, value):
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, 'CDLL', lambda name: FakeLibc())
    monkeypatch.setenv('FFL_MM_NO_MALLOC_TUNING', '1')
    assert cpu_allocator.tune_cpu_allocator() is False and calls == []
    monkeypatch.delenv('FFL_MM_NO_MALLOC_TUNING')
    assert cpu_allocator.tune_cpu_allocator() is True
    # M_MMAP_MAX 0, M_TRIM_THRESHOLD 2**31 - 1, M_TOP_PAD 256 MB
    assert calls == [(-4, 0), (-1, 2**31 - 1), (-2, 2**28)]

    class Failing(FakeLibc):

        def mallopt(self, option, value):
            return 0

    monkeypatch.setattr(ctypes, 'CDLL', lambda name: Failing())
    assert cpu_allocator.tune_cpu_allocator() is False


#: every method's demo config (found, as the conformance suite finds them),
#: and the variants whose step the reference writes out differently
REFERENCE_ROWS = [(path, {}) for path in method_configs().values()] + [
    # MFEF's chains recomputed selectively
    ('configs/mfef/mfef_resnet32x2_digits.py',
     dict(fusion_pre_neck_with_cp='selective')),
    # DML's one-by-one update (its Algorithm 1) as a loop
    ('configs/dml/dml_resnet32x2_digits.py',
     dict(branch_update='one_by_one')),
    # CL-ILR with its targets kept (the public code; digits detaches them)
    ('configs/clilr/clilr_resnet32x3_cifar100.py', {}),
]


@pytest.mark.parametrize(
    'config,options', REFERENCE_ROWS,
    ids=[f'{osp.basename(c)}{"-" + "-".join(o) if o else ""}'
         for c, o in REFERENCE_ROWS])
def test_reference_step_trains_like_train_step(config, options):
    """The hand-written step (pre-normalised batch, direct module calls,
    the loss written out, torch.optim with merged groups; DML's
    one-by-one update as a loop; recomputed chains in PyTorch's
    checkpoint) and ffl_mm's train_step move identical models
    identically, for the model, its cross-entropy floor and the single
    network: the benchmark compares like with like."""
    import torch
    from mmengine.optim import build_optim_wrapper

    ReferenceStep = lab('reference_step').ReferenceStep
    from mmengine.logging import MessageHub
    cfg = shipped_config(config)
    cfg.model.update(options)
    # ResNet-8: every module kind of the ResNet-32 in a quarter of the time
    cfg.model.backbone.depth = 8
    data = bench.synthetic_batch(4, 32, 10)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    # mid-ramp: both take the KD weight of epoch 1 (0.06 with R = 4)
    hub = MessageHub.get_current_instance()
    epoch = hub.get_info('epoch')
    hub.update_info('epoch', 1)
    try:
        for variant in bench.VARIANTS:
            torch.manual_seed(0)
            model = bench.build_variant(cfg, variant)
            twin = copy.deepcopy(model)
            optim_cfg = bench.variant_optim_cfg(cfg, model)
            wrapper = build_optim_wrapper(model.train(), optim_cfg)
            reference = ReferenceStep(twin, optim_cfg, data)
            for _ in range(2):
                logs = model.train_step(copy.deepcopy(data), wrapper)
                loss = reference.step()
                assert float(loss) == pytest.approx(logs['loss'].item(),
                                                    rel=1e-12), variant
            for (name, a), b in zip(model.state_dict().items(),
                                    twin.state_dict().values()):
                if getattr(model, 'fusion_pre_necks', None) is not None and \
                        model.fusion_pre_necks.with_cp and \
                        name.startswith('fusion_pre_necks') and \
                        ('running' in name or 'batches' in name):
                    # a script's checkpoint moves BN statistics twice a
                    # step; the model's once (tests/test_models/
                    # test_recompute.py)
                    continue
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12,
                                           msg=f'{variant} {name}')
    finally:
        torch.set_default_dtype(default)
        hub.update_info('epoch', epoch)


def test_reference_step_names_what_it_does_not_cover():
    ReferenceStep = lab('reference_step').ReferenceStep
    reference_unsupported = lab('reference_step').reference_unsupported
    one = shipped_config('configs/one/one_resnet32x2_digits.py')
    dml = shipped_config('configs/dml/dml_resnet32x2_digits.py')
    ffl = shipped_config(FFL)
    # each reason names the one setting in the way
    one.model.ensemble_head.gate_input = 'input'
    assert reference_unsupported(bench.build_variant(one, 'model')) == \
        'an ensemble head (GatedEnsembleHead)'
    mfef = shipped_config('configs/mfef/mfef_resnet32x2_digits.py')
    mfef.model.heads_on_enhanced = True
    assert 'heads_on_enhanced=True' in reference_unsupported(
        bench.build_variant(mfef, 'model'))
    ffl_cp = copy.deepcopy(ffl)
    ffl_cp.model.fusion_neck.with_cp = True
    assert reference_unsupported(bench.build_variant(ffl_cp, 'model')) == \
        'a recomputed fusion neck'
    dml.model.distill_loss = dict(type='_BranchesOnlyLoss')
    assert 'distillation by _BranchesOnlyLoss' == reference_unsupported(
        bench.build_variant(dml, 'model'))
    # a method with no hand-written loss in the lab is named
    from ffl_mm.models.classifiers import MultiBranchClassifier
    MODELS.register_module('_UnwrittenClassifier', force=True,
                           module=type('_UnwrittenClassifier',
                                       (MultiBranchClassifier, ), {}))
    unwritten = copy.deepcopy(dml)
    unwritten.model.type = '_UnwrittenClassifier'
    unwritten.model.pop('branch_update')
    unwritten.model.distill_loss = dict(type='PeerKDLoss')
    assert reference_unsupported(bench.build_variant(unwritten, 'model')) \
        == ('a _UnwrittenClassifier (no hand-written loss in '
            'ffl_mm_analysis/reference_losses/)')
    # ONE's and DML's floors and single networks are covered
    assert reference_unsupported(bench.build_variant(one, 'ce_only')) is None
    assert reference_unsupported(bench.build_variant(dml, 'single')) is None
    smoothed = copy.deepcopy(ffl)
    smoothed.model.head.loss = dict(type='LabelSmoothLoss',
                                    label_smooth_val=0.1)
    model = bench.build_variant(smoothed, 'model')
    assert reference_unsupported(model) == \
        'head 0 has a loss other than a plain CrossEntropyLoss'
    with pytest.raises(ValueError, match='does not cover head 0'):
        ReferenceStep(model, ffl.optim_wrapper,
                      bench.synthetic_batch(2, 32, 10))
