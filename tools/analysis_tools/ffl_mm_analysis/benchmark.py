# Copyright (c) ffl_mm contributors.
"""Training-step cost of a multi-branch model against its floors.

Used by ``tools/analysis_tools/benchmark.py``. Three variants are built
from one config:

* ``model`` (a): the configured FFL/MFEF model;
* ``ce_only`` (b): the same branches (and shared trunk) trained with
  cross-entropy only: no fusion neck, no MFEF modules, no distillation;
* ``single`` (c): one sub-network as a plain MMPretrain ``ImageClassifier``
  (backbone, neck and head of branch 0). N of them trained one after
  another cost N times its step.

Each step is ``model.train_step(data, optim_wrapper)``: data preprocessing,
forward, backward and the optimizer step, as in training.

For a model with fusion pre-necks (MFEF's multi-scale and attention
chain), ``without_pre_neck`` is the same model without them (FFL on the
same branches): ``model / without_pre_neck`` is what the chain costs, and
``without_pre_neck / ce_only`` what the fusion module and the
distillation cost.

The reference variants ``model_reference`` and ``single_reference`` train
the model and the single network as a hand-written PyTorch script would
(:mod:`.reference_step`): what ffl_mm and MMEngine add to a step is
``model / model_reference`` and ``single / single_reference``.
"""
import copy
import math
import os
import platform
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from ffl_mm.apis.model_cfg import runner_model_cfg
from ffl_mm.engine.compile import compile_model as compile_computation
from ffl_mm.engine.optimizers import unmatched_custom_keys
from .reference_step import ReferenceStep

VARIANTS = ('model', 'ce_only', 'single')
#: variants timed only for models that have the part they leave out
OPTIONAL_VARIANTS = ('without_pre_neck', )
#: reference variant -> the variant whose model it trains by hand
REFERENCES = {'model_reference': 'model', 'single_reference': 'single'}


def variant_model_cfg(model_cfg: ConfigDict, variant: str) -> ConfigDict:
    """The model config of a variant (see the module docstring)."""
    cfg = copy.deepcopy(model_cfg)
    if variant == 'model':
        return cfg
    if variant == 'ce_only':
        # the branches alone: the base class, without a method's parts
        from ffl_mm.models.classifiers import MultiBranchClassifier
        from ffl_mm.models.classifiers.branch_cfgs import method_args
        method = MODELS.get(cfg['type'])
        for key in ('distill_loss',
                    *method_args(MultiBranchClassifier, method)):
            cfg.pop(key, None)
        cfg['type'] = 'MultiBranchClassifier'
        cfg['test_cfg'] = dict(predict='ensemble')
        return cfg
    if variant == 'without_pre_neck':
        if not cfg.get('fusion_pre_neck'):
            raise ValueError('variant without_pre_neck: the model has no '
                             'fusion_pre_neck to leave out.')
        cfg['fusion_pre_neck'] = None
        cfg['fusion_pre_neck_with_cp'] = False
        cfg['heads_on_enhanced'] = False
        return cfg
    if variant == 'single':
        # branch 0 as a plain network, channels as the model infers them
        branches = MODELS.build(variant_model_cfg(cfg, 'ce_only'))
        # built in ffl_mm's scope (ffl_mm's backbones), as the model is
        return ConfigDict(
            type='ImageClassifier',
            _scope_='ffl_mm',
            **branches.branch_cfg(0),
            data_preprocessor=cfg.get('data_preprocessor'))
    raise ValueError(f'unknown variant {variant!r}; use one of '
                     f'{VARIANTS + OPTIONAL_VARIANTS}.')


def optional_variants(model_cfg: ConfigDict) -> List[str]:
    """The :data:`OPTIONAL_VARIANTS` that apply to a model config."""
    return ['without_pre_neck'] if model_cfg.get('fusion_pre_neck') else []


def synthetic_batch(batch_size: int, size: int, num_classes: int,
                    seed: int = 0) -> dict:
    """A batch as ffl_mm's data loaders give it (``default_collate`` in
    the workers): uint8 images ``(B, 3, size, size)`` and a DataSample with
    a label for each."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(
        0, 256, (batch_size, 3, size, size), dtype=torch.uint8,
        generator=gen)
    labels = torch.randint(0, num_classes, (batch_size, ), generator=gen)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return dict(inputs=inputs, data_samples=samples)


def build_variant(cfg: Config, variant: str) -> torch.nn.Module:
    """The initialised model of ``variant``."""
    model = MODELS.build(variant_model_cfg(runner_model_cfg(cfg), variant))
    model.init_weights()
    return model


def variant_optim_cfg(cfg: Config, model: torch.nn.Module) -> ConfigDict:
    """The config's ``optim_wrapper`` for a variant's model: without the
    paramwise keys of modules it lacks (the variants without a fusion
    module; a key that matches nothing is an error in scope ffl_mm)."""
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    custom_keys = optim_cfg.get('paramwise_cfg', {}).get('custom_keys')
    for key in unmatched_custom_keys(custom_keys or {}, model):
        custom_keys.pop(key)
    return optim_cfg


class ReferenceRunner:
    """A variant's model trained by :class:`ReferenceStep` (fp32, the
    default memory format, eager).

    Raises:
        ValueError: The model is not covered (the reason is named).
    """

    def __init__(self, cfg: Config, variant: str, device: str, data: dict):
        model = build_variant(cfg, REFERENCES.get(variant, variant))
        model.to(device)
        self.device = device
        self.num_params = sum(p.numel() for p in model.parameters())
        self.reference = ReferenceStep(model, variant_optim_cfg(cfg, model),
                                       data)

    def step(self, data: dict) -> None:
        self.reference.step()
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()


class StepRunner:
    """A built variant and one training step of it."""

    def __init__(self, cfg: Config, variant: str, device: str,
                 amp: bool = False, channels_last: bool = False,
                 compile_model: bool = False):
        model = build_variant(cfg, variant)
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if compile_model:
            # what tools/train.py does with compile=True
            compile_computation(model, {})
        optim_cfg = variant_optim_cfg(cfg, model)
        if amp:
            optim_cfg['type'] = 'AmpOptimWrapper'
            optim_cfg.setdefault('loss_scale', 'dynamic')
        self.model = model.train()
        self.optim_wrapper = build_optim_wrapper(model, optim_cfg)
        self.device = device
        self.channels_last = channels_last
        self.num_params = sum(p.numel() for p in model.parameters())
        self._cl_batch = None

    def _channels_last(self, data: dict) -> dict:
        """The batch as one ``(B, 3, H, W)`` channels-last tensor (made
        once: the preprocessor keeps the layout through its element-wise
        normalisation)."""
        if self._cl_batch is None or self._cl_batch[0] is not data:
            inputs = data['inputs']
            if isinstance(inputs, (list, tuple)):
                inputs = torch.stack(list(inputs))
            self._cl_batch = (data, dict(
                inputs=inputs.contiguous(memory_format=torch.channels_last),
                data_samples=data['data_samples']))
        return self._cl_batch[1]

    def step(self, data: dict) -> None:
        if self.channels_last:
            data = self._channels_last(data)
        self.model.train_step(data, self.optim_wrapper)
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()


def time_interleaved(runners: Dict[str, StepRunner], data: dict, iters: int,
                     warmup: int,
                     clock: Callable[[], float] = time.perf_counter,
                     first: Optional[Dict[str, float]] = None
                     ) -> Dict[str, List[float]]:
    """Step times (s) of every runner, in interleaved rounds (a, b, c),
    (b, c, a), (c, a, b), ... after ``warmup`` untimed rounds, so that the
    noise of a shared machine hits every variant alike; each round starts
    one runner later, so that no variant always follows the same one
    (what one step leaves in the caches and the allocator is then shared
    out too). ``first`` (if given) receives each runner's first step time
    (with ``--compile``, the compilation)."""
    times: Dict[str, List[float]] = {name: [] for name in runners}
    names = list(runners)
    for round_index in range(warmup + iters):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            runner = runners[name]
            start = clock()
            runner.step(data)
            elapsed = clock() - start
            if round_index >= warmup:
                times[name].append(elapsed)
            elif round_index == 0 and first is not None:
                first[name] = elapsed
    return times


def summary(values: List[float]) -> dict:
    """Median, quartiles and range of step times, in milliseconds, and
    every round's time in the order the rounds ran (``rounds_ms``: the
    variants' lists pair up round by round)."""
    rounds = [v * 1e3 for v in values]
    ms = sorted(rounds)
    quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else ms * 3
    return dict(
        median_ms=statistics.median(ms),
        q1_ms=quartiles[0],
        q3_ms=quartiles[-1],
        min_ms=ms[0],
        max_ms=ms[-1],
        n=len(ms),
        rounds_ms=rounds)


def rss_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in bytes."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_description(device: str) -> dict:
    info = dict(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        device=device)
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name()
    return info


def allocated_bytes(fn: Callable[[], None]) -> Tuple[int, int]:
    """Tensor bytes allocated while ``fn`` runs (CPU tensors): the
    largest number alive at one moment, and the number still alive when
    it returns.

    Read from PyTorch's profiler with ``profile_memory=True``: the CPU
    allocator then reports, at each allocation and free, the bytes it
    handed out since profiling started and that are still in use (tensors
    allocated earlier do not count, whether they live or die). Whatever
    holds the tensors is seen: autograd's saved tensors, activation
    checkpointing's inputs and caches, temporaries inside an operator
    that allocate through PyTorch. The peak is the analogue of
    ``torch.cuda.max_memory_allocated`` for the tensors ``fn`` allocates.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    events = []
    todo = list(prof.profiler.kineto_results.experimental_event_tree())
    while todo:
        event = todo.pop()
        todo.extend(event.children)
        fields = event.extra_fields
        if type(fields).__name__ == '_ExtraFields_Allocation' and \
                fields.device.type == 'cpu':
            events.append((event.start_time_ns, fields.alloc_size,
                           fields.total_allocated))
    if not events:
        return 0, 0
    events.sort()
    # the allocator's count may start above zero (blocks allocated in an
    # earlier profiling session and freed after it)
    start = events[0][2] - events[0][1]
    return (max(total for _, _, total in events) - start,
            events[-1][2] - start)


def peak_allocated_bytes(fn: Callable[[], None]) -> int:
    """The peak of :func:`allocated_bytes`."""
    return allocated_bytes(fn)[0]


def state_bytes(runner: 'StepRunner', grads: bool = True) -> int:
    """Parameters, their gradients (with ``grads``) and the optimizer
    state, in bytes."""
    params = [p for p in runner.model.parameters()]
    total = sum(p.numel() * p.element_size() for p in params)
    if grads:
        total += sum(p.numel() * p.element_size() for p in params
                     if p.requires_grad)
    for state in runner.optim_wrapper.optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values()
                     if torch.is_tensor(v))
    return total


def measure_memory(cfg: Config, variant: str, device: str, data: dict,
                   steps: int = 2, **kwargs) -> dict:
    """Peak memory of training steps of one variant.

    CUDA: ``torch.cuda.max_memory_allocated`` over the steps. CPU (no
    allocator statistics outside the profiler): the parameters and the
    optimizer state, which live through the step, plus the peak of the
    tensors the last step allocates (:func:`peak_allocated_bytes`:
    activations, whatever autograd or checkpointing keeps for backward,
    gradients and temporaries). Exact and repeatable; it leaves out
    memory that does not go through PyTorch's allocator (oneDNN's
    scratch buffers, Python objects). The growth of the process's peak
    resident set during the steps is reported too (``rss_growth_bytes``,
    coarse; call this in a fresh process per variant, as the tool does).
    """
    runner = StepRunner(cfg, variant, device, **kwargs)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            runner.step(data)
        return dict(peak_bytes=torch.cuda.max_memory_allocated(),
                    kind='cuda_max_memory_allocated')
    before = rss_bytes('VmRSS')
    for _ in range(steps - 1):
        runner.step(data)
    # the gradients of the last step are freed by its zero_grad: they
    # count in the step's allocations, not in the state
    static = state_bytes(runner, grads=False)
    step = peak_allocated_bytes(lambda: runner.step(data))
    return dict(
        peak_bytes=static + step,
        step_peak_bytes=step,
        state_bytes=static,
        rss_growth_bytes=rss_bytes('VmHWM') - before,
        kind='cpu_state_plus_step_allocations')


def paired_ratio(times: List[float], base: List[float]) -> float:
    """Median over the rounds of ``times[i] / base[i]``: the two steps of
    one round ran a moment apart, so a machine whose speed drifts over a
    run moves both alike."""
    return statistics.median(_per_round(times, base))


def _per_round(times: List[float], base: List[float]) -> List[float]:
    return [t / b for t, b in zip(times, base)]


def median_interval(values: List[float],
                    confidence: float = 0.95) -> Optional[List[float]]:
    """A distribution-free confidence interval of the median of
    ``values``: ``[x_(k), x_(n+1-k)]`` of the sorted values, with the
    largest ``k`` for which ``P(Binomial(n, 1/2) < k) <= (1 -
    confidence) / 2`` (30 rounds: the 10th and 21st of 30, 95.7 %).
    ``None`` with too few values (fewer than 6 at 95 %)."""
    xs = sorted(values)
    n = len(xs)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0
    while k < n:
        below += math.comb(n, k) / 2**n  # P(Binomial(n, 1/2) <= k)
        if below > tail:
            break
        k += 1
    return [xs[k - 1], xs[n - k]] if k >= 1 else None


def paired_fields(times: Optional[Dict[str, List[float]]], num: str,
                  den: str, key: str) -> dict:
    """``{key}_paired``: the median over the rounds of ``num / den``
    (:func:`paired_ratio`), and ``{key}_paired_ci``: its 95 % interval
    (:func:`median_interval`); ``None`` without both variants' times."""
    if not times or num not in times or den not in times:
        return {key + '_paired': None, key + '_paired_ci': None}
    per_round = _per_round(times[num], times[den])
    return {key + '_paired': statistics.median(per_round),
            key + '_paired_ci': median_interval(per_round)}


def ratios(results: dict, num_branches: int,
           times: Optional[Dict[str, List[float]]] = None) -> dict:
    """The ratios the benchmark reports (medians over the rounds; with
    the rounds' ``times``, also paired round by round, ``..._paired``,
    with a 95 % interval, ``..._paired_ci``)."""
    t = {k: v['time']['median_ms'] for k, v in results.items()}
    out = dict(
        ratio_time_vs_ce_only=t['model'] / t['ce_only'],
        ratio_time_vs_separate=t['model'] / (num_branches * t['single']),
        ratio_time_vs_single=t['model'] / t['single'])
    if times and 'model' in times and 'ce_only' in times:
        out.update(paired_fields(times, 'model', 'ce_only',
                                 'ratio_time_vs_ce_only'))
    if 'without_pre_neck' in t:
        # the pre-necks' share (a / a-) and the rest's (a- / b)
        for key, num, den in (
                ('ratio_time_pre_neck', 'model', 'without_pre_neck'),
                ('ratio_time_without_pre_neck_vs_ce_only',
                 'without_pre_neck', 'ce_only')):
            out[key] = t[num] / t[den]
            out.update(paired_fields(times, num, den, key))
    if 'model_eager' in t:  # --compile: the model also run eagerly
        out['ratio_time_compiled_vs_eager'] = t['model'] / t['model_eager']
        out.update(paired_fields(times, 'model', 'model_eager',
                                 'ratio_time_compiled_vs_eager'))
    for name, of in REFERENCES.items():
        key = f'ratio_time_{of}_vs_reference'
        out[key] = t[of] / t[name] if name in t else None
        out.update(paired_fields(times, of, name, key))
    mem = {k: v.get('memory', {}).get('peak_bytes') for k, v in
           results.items()}
    if mem.get('model') and mem.get('ce_only'):
        out['ratio_memory_vs_ce_only'] = mem['model'] / mem['ce_only']
    else:
        out['ratio_memory_vs_ce_only'] = None
    return out


def num_branches_of(cfg: Config) -> Optional[int]:
    backbone = cfg.model.get('backbone')
    if isinstance(backbone, (list, tuple)):
        return len(backbone)
    return cfg.model.get('num_branches')
