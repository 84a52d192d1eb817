# Copyright (c) ffl_mm contributors.
"""Measure what mutual distillation costs per training step.

In one process, on synthetic input of the config's shape and after
warm-up, it times ``train_step`` (preprocessing, forward, backward,
optimizer step) of three variants in interleaved rounds ((a, b, c),
(b, c, a), (c, a, b), ...: each round starts one variant later):

  (a) ffl      the configured FFL/MFEF model
  (b) ce_only  the same branches trained with cross-entropy only
  (c) single   one sub-network; N of them trained one after another cost N x

(with fusion pre-necks, MFEF's chain, also ``without_pre_neck``: the same
model without them, which splits a/b into the chain's share and the
fusion module's and distillation's),
and, in the same rounds, the model and the single network trained as a
hand-written PyTorch script would (pre-normalised float batches, direct
module calls, the loss written out, ``torch.optim``; see
``ffl_mm_analysis/reference_step.py`` beside this tool), and reports the
median and spread
of the step time, the peak memory
(CUDA: ``torch.cuda.max_memory_allocated``; CPU: parameters and
optimizer state plus the peak of the tensors a step allocates, from the
profiler's count of the CPU allocator, exact and repeatable, measured in a
fresh process per variant), the parameters, the
ratios a/b and a/(N c), and ffl_mm's step against the hand-written one
(a/reference, c/reference). With ``--compile`` every variant is compiled as
``tools/train.py`` compiles it, and the model also runs eagerly in the
same rounds (compiled/eager).

Examples::

    python tools/analysis_tools/benchmark.py \\
        configs/ffl/ffl_resnet32x2_cifar100.py
    python tools/analysis_tools/benchmark.py \\
        configs/ffl/ffl_resnet34x2_imagenet.py \\
        --batch-size 32 --iters 5 --json bench.json
"""
import argparse
import json
import os.path as osp
import subprocess
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # ffl_mm_analysis

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import ffl_mm  # noqa: F401,E402
from ffl_mm.tools_support.cpu_allocator import tune_cpu_allocator  # noqa: E402
from ffl_mm.tools_support.mmpretrain_tools import quiet_logger  # noqa: E402
from ffl_mm_analysis import benchmark as bench  # noqa: E402
from ffl_mm.apis.model_cfg import input_size, runner_model_cfg  # noqa: E402,E501
from ffl_mm_analysis.loop_overhead import runner_vs_bare_loop  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark a training step')
    parser.add_argument('config')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    parser.add_argument('--batch-size', type=int, help='default: config')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed rounds')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed rounds first')
    parser.add_argument('--amp', action='store_true',
                        help="MMEngine's AmpOptimWrapper (CUDA)")
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile each variant's computation as "
                        'tools/train.py does with compile=True')
    parser.add_argument('--no-reference', action='store_true',
                        help='skip the hand-written reference steps')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the memory measurement')
    parser.add_argument('--loop-overhead', action='store_true',
                        help="also time the step through MMEngine's Runner "
                        'against a bare PyTorch loop (CPU/CUDA as --device)')
    parser.add_argument('--default-malloc', action='store_true',
                        help="CPU: keep glibc's default allocator settings "
                        '(as tools/train.py does not; see '
                        'ffl_mm.tools_support.cpu_allocator)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    # internal: measure one variant's memory in this (fresh) process
    parser.add_argument('--memory-variant', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    quiet_logger()
    allocator_tuned = False
    if not args.device.startswith('cuda') and not args.default_malloc:
        allocator_tuned = tune_cpu_allocator()
        if allocator_tuned and not args.memory_variant:
            print('CPU: glibc keeps freed memory in the process, as in '
                  'tools/train.py (--default-malloc turns it off).')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # as MMPretrain's tools: build in the config's scope, as a Runner would
    init_default_scope(cfg.get('default_scope', 'ffl_mm'))
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda: this machine has no CUDA device.')
    if args.amp and not args.device.startswith('cuda'):
        raise SystemExit("--amp uses MMEngine's AmpOptimWrapper, which "
                         'needs --device cuda.')
    batch_size = args.batch_size or cfg.train_dataloader.batch_size
    size = input_size(cfg)
    num_classes = cfg.data_preprocessor.get('num_classes', None) or 1000
    data = bench.synthetic_batch(batch_size, size, num_classes)
    options = dict(
        amp=args.amp,
        channels_last=args.channels_last,
        compile_model=args.compile)

    if args.memory_variant:
        print(json.dumps(bench.measure_memory(cfg, args.memory_variant,
                                              args.device, data,
                                              **options)))
        return None

    num_branches = bench.num_branches_of(cfg)
    if num_branches is None:
        raise SystemExit(f'{args.config} is not a MultiBranchClassifier '
                         'config (no num_branches).')
    runners = {
        v: bench.StepRunner(cfg, v, args.device, **options)
        for v in bench.VARIANTS + tuple(bench.optional_variants(
            runner_model_cfg(cfg)))
    }
    if args.compile:
        # the same model eager, in the same rounds: what compiling gives
        runners['model_eager'] = bench.StepRunner(
            cfg, 'model', args.device, **dict(options, compile_model=False))
    reference_note = None
    if args.no_reference:
        reference_note = '--no-reference'
    elif args.amp or args.channels_last or args.compile:
        reference_note = 'the reference step is eager fp32 only'
    else:
        for name in bench.REFERENCES:
            try:
                runners[name] = bench.ReferenceRunner(
                    cfg, name, args.device, data)
            except ValueError as err:
                reference_note = str(err)
                print(f'{name}: skipped ({err})')
    print(f'Timing {", ".join(runners)} on {batch_size}x3x{size}x{size}, '
          f'{args.iters} interleaved rounds after {args.warmup} warm-up '
          f'rounds ({args.device}, {torch.get_num_threads()} threads)...',
          flush=True)
    first = {}
    times = bench.time_interleaved(runners, data, args.iters, args.warmup,
                                   first=first)

    results = {}
    for name, runner in runners.items():
        results[name] = dict(
            params=runner.num_params, time=bench.summary(times[name]),
            first_step_s=first.get(name))
    if not args.no_memory:
        for name in bench.VARIANTS:
            results[name]['memory'] = measure_memory(
                args, name, cfg, data, options)
    loop = None
    if args.loop_overhead:
        print('Timing the Runner against a bare PyTorch loop...', flush=True)
        loop_times = runner_vs_bare_loop(cfg, data, args.iters, args.warmup)
        loop_kind = loop_times.pop('bare_kind')
        loop = {name: bench.summary(t) for name, t in loop_times.items()}
        loop['bare_kind'] = loop_kind
        loop['ratio_paired'] = bench.paired_ratio(loop_times['runner'],
                                                  loop_times['bare'])
    summary = dict(
        config=args.config,
        batch_size=batch_size,
        input_size=size,
        num_branches=num_branches,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        cpu_allocator_tuned=allocator_tuned,
        machine=bench.machine_description(args.device),
        variants=results,
        reference_skipped=reference_note,
        **bench.ratios(results, num_branches, times))
    if loop is not None:
        summary['loop_overhead'] = loop
        summary['ratio_runner_vs_bare_loop'] = (
            loop['runner']['median_ms'] / loop['bare']['median_ms'])
    print_table(summary)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(summary, f, indent=2)
        print(f'Written to {args.json}')
    return summary


def measure_memory(args, variant, cfg, data, options):
    """Memory of one variant: on CUDA here (peak statistics are reset per
    variant), on the CPU in a fresh process (its peak is per process)."""
    if args.device.startswith('cuda'):
        return bench.measure_memory(cfg, variant, args.device, data,
                                    **options)
    argv = [args.config, '--device', args.device, '--memory-variant', variant]
    if args.batch_size:
        argv += ['--batch-size', str(args.batch_size)]
    for flag in ('amp', 'channels_last', 'compile', 'default_malloc'):
        if getattr(args, flag):
            argv.append('--' + flag.replace('_', '-'))
    if args.cfg_options:
        argv += ['--cfg-options'] + [
            f'{k}={v}' for k, v in args.cfg_options.items()
        ]
    proc = subprocess.run([sys.executable, __file__, *argv],
                          stdout=subprocess.PIPE,
                          text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def round_by_round(summary, key):
    """`` (round by round: R [low-high])`` for a ratio with paired
    figures in ``summary`` (the 95 % interval where there are enough
    rounds), else ``''``."""
    paired = summary.get(key + '_paired')
    if paired is None:
        return ''
    ci = summary.get(key + '_paired_ci')
    interval = '' if ci is None else f' [{ci[0]:.3f}-{ci[1]:.3f}]'
    return f' (round by round: {paired:.3f}{interval})'


def print_table(summary):
    n = summary['num_branches']
    batch = summary['batch_size']
    rows = [('variant', 'params', 'median ms', 'q1-q3 ms', 'img/s',
             'peak MB')]
    labels = dict(model='model (a)', ce_only='ce_only (b)',
                  single='single (c)', model_reference='a, hand-written',
                  single_reference='c, hand-written',
                  model_eager='a, not compiled',
                  without_pre_neck='a without pre-necks')
    for name, res in summary['variants'].items():
        t = res['time']
        mem = res.get('memory', {}).get('peak_bytes')
        rows.append((labels.get(name, name), f'{res["params"]:,}',
                     f'{t["median_ms"]:.1f}',
                     f'{t["q1_ms"]:.1f}-{t["q3_ms"]:.1f}',
                     f'{batch / t["median_ms"] * 1e3:.1f}',
                     '-' if mem is None else f'{mem / 2**20:.1f}'))
    single = summary['variants']['single']['time']['median_ms']
    rows.append((f'{n} x single', '', f'{n * single:.1f}', '',
                 f'{batch / (n * single) * 1e3:.1f}', ''))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print('  '.join(c.ljust(w) for c, w in zip(row, widths)))
    mem_ratio = summary['ratio_memory_vs_ce_only']
    print(f'\ntime a/b (vs ce_only):        '
          f'{summary["ratio_time_vs_ce_only"]:.3f}' +
          round_by_round(summary, 'ratio_time_vs_ce_only'))
    if summary.get('ratio_time_pre_neck') is not None:
        key = 'ratio_time_without_pre_neck_vs_ce_only'
        print(f'time a / a without pre-necks: '
              f'{summary["ratio_time_pre_neck"]:.3f}' +
              round_by_round(summary, 'ratio_time_pre_neck'))
        print(f'time a without pre-necks / b: {summary[key]:.3f}' +
              round_by_round(summary, key))
    print(f'time a/(N c) (vs separate):   '
          f'{summary["ratio_time_vs_separate"]:.3f}')
    print('memory a/b (vs ce_only):      ' +
          ('-' if mem_ratio is None else f'{mem_ratio:.3f}'))
    for of in bench.REFERENCES.values():
        key = f'ratio_time_{of}_vs_reference'
        if summary.get(key) is not None:
            print(f'time {of} / hand-written:{" " * (11 - len(of))}'
                  f'{summary[key]:.3f}' + round_by_round(summary, key))
    if 'ratio_runner_vs_bare_loop' in summary:
        loop = summary['loop_overhead']
        kind = 'hand-written' if loop['bare_kind'] == 'hand_written' \
            else 'bare loop'
        print(f'Runner / {kind}:{" " * (20 - len(kind))}'
              f'{summary["ratio_runner_vs_bare_loop"]:.3f} '
              f'({loop["runner"]["median_ms"]:.1f} / '
              f'{loop["bare"]["median_ms"]:.1f} ms; round by round '
              f'{loop["ratio_paired"]:.3f})')
    if summary.get('ratio_time_compiled_vs_eager'):
        print(f'time a compiled / eager:      '
              f'{summary["ratio_time_compiled_vs_eager"]:.3f}' +
              round_by_round(summary, 'ratio_time_compiled_vs_eager'))
    if summary['compile']:
        print('first step (compiles), s:      ' + ', '.join(
            f'{name} {res["first_step_s"]:.1f}'
            for name, res in summary['variants'].items()
            if res.get('first_step_s') is not None))
    machine = summary['machine']
    print(f'machine: {machine["processor"]}, {machine["cpu_count"]} CPUs, '
          f'{machine["torch_threads"]} torch threads, torch '
          f'{machine["torch"]}, device {machine["device"]}'
          f'{" (" + machine["gpu"] + ")" if "gpu" in machine else ""}')


if __name__ == '__main__':
    main()
