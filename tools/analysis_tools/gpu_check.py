# Copyright (c) ffl_mm contributors.
"""Check ffl_mm on a CUDA device in one command (``make gpu-check``).

Runs the tests marked ``cuda`` (mixed precision of every method, the
recomputation switch and ``compile=True`` against eager, channels-last, a
two-process NCCL run where there are two GPUs), then the training-step
benchmark of every method of model-index.yml (its CIFAR ResNet-32
config: CIFAR-100 shapes, batch 128) on the device, with and without ``--amp``, and writes one Markdown
report (device, versions, test summary, figures) ready to paste into
docs/benchmarks.md, with the JSON of every run beside it.

Without CUDA it says so and exits 0: there is nothing to check.

Examples::

    make gpu-check                                   # work_dirs/gpu_check/
    python tools/analysis_tools/gpu_check.py --rounds 20 --out DIR
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import subprocess
import sys
from typing import Dict, List, Optional

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
BENCH = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark.py')
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
from ffl_mm_analysis.methods import shipped_methods  # noqa: E402

#: every method's CIFAR ResNet-32 config (model-index.yml's methods)
CONFIGS = tuple(m.bench_config for m in shipped_methods(REPO).values())
NO_CUDA = ('no CUDA device: nothing to check (make test-gpu skips every '
           'test marked cuda, saying so).')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/gpu_check',
                        help='folder of the report and the JSON files')
    parser.add_argument('--rounds', type=int, default=20,
                        help='timed benchmark rounds per run')
    parser.add_argument('--skip-tests', action='store_true')
    parser.add_argument('--skip-bench', action='store_true')
    return parser.parse_args(argv)


def environment() -> Dict[str, str]:
    """The device and the versions the report names."""
    import mmengine
    import mmpretrain
    import torch

    import ffl_mm
    env = {
        'date (UTC)': datetime.datetime.now(
            datetime.timezone.utc).strftime('%Y-%m-%d %H:%M'),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'CUDA (torch built with)': str(torch.version.cuda),
        'cuDNN': str(torch.backends.cudnn.version()),
        'mmengine': mmengine.__version__,
        'mmpretrain': mmpretrain.__version__,
        'ffl_mm': ffl_mm.__version__,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env['device'] = (f'{torch.cuda.device_count()} x {props.name}, '
                         f'{props.total_memory / 2**30:.0f} GiB, compute '
                         f'capability {props.major}.{props.minor}')
    return env


def run_tests(out_dir: str) -> Dict[str, object]:
    """``pytest -m cuda``: its exit code and closing line."""
    log = osp.join(out_dir, 'tests.log')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', 'tests', '-m', 'cuda', '-rs',
         '-p', 'no:cacheprovider'], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    with open(log, 'w') as f:
        f.write(proc.stdout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return dict(returncode=proc.returncode,
                summary=lines[-1].strip('= ') if lines else '(no output)',
                log=log)


def run_bench(out_dir: str, rounds: int) -> List[dict]:
    """Each config on ``cuda``, without and with ``--amp``."""
    runs = []
    for config in CONFIGS:
        for amp in (False, True):
            name = osp.splitext(osp.basename(config))[0] + \
                ('_amp' if amp else '')
            path = osp.join(out_dir, f'{name}.json')
            cmd = [sys.executable, BENCH, config, '--device', 'cuda',
                   '--iters', str(rounds), '--warmup', '3', '--json', path]
            if amp:
                cmd.append('--amp')
            print('>>', ' '.join(cmd[1:]), flush=True)
            proc = subprocess.run(cmd, cwd=REPO)
            if proc.returncode == 0 and osp.isfile(path):
                with open(path) as f:
                    runs.append(json.load(f))
            else:
                runs.append(dict(config=config, amp=amp,
                                 error=f'exit code {proc.returncode}'))
    return runs


def _fmt(value: Optional[float], spec: str = '.3f') -> str:
    return '–' if value is None else format(value, spec)


def format_report(env: Dict[str, str], tests: Optional[dict],
                  runs: List[dict], command: str) -> str:
    """The Markdown report: the device and versions, the tests' closing
    line, and one table row per benchmark run (``benchmark.py --json``
    output, or ``dict(config, amp, error)`` for a run that failed)."""
    lines = [f'### GPU check, {env.get("date (UTC)", "")}', '',
             f'Command: `{command}`', '']
    lines += [f'- {key}: {value}' for key, value in env.items()
              if key != 'date (UTC)']
    if tests is not None:
        lines += ['', f'Tests marked `cuda`: {tests["summary"]} (exit code '
                  f'{tests["returncode"]}; log: `{tests["log"]}`).']
    if runs:
        lines += [
            '', '| config | AMP | step ms | step / CE-only floor | '
            'step / hand-written loop | peak memory MiB | memory / floor |',
            '|---|---|---|---|---|---|---|'
        ]
        for run in runs:
            name = osp.splitext(osp.basename(run['config']))[0]
            amp = 'fp16' if run.get('amp') else 'fp32'
            if 'error' in run:
                lines.append(f'| {name} | {amp} | failed: {run["error"]} '
                             '| | | | |')
                continue
            model = run['variants']['model']
            peak = (model.get('memory') or {}).get('peak_bytes')
            lines.append(
                f'| {name} | {amp} | {_fmt(model["time"]["median_ms"], ".1f")}'
                f' | {_fmt(run.get("ratio_time_vs_ce_only"))}'
                f' | {_fmt(run.get("ratio_time_model_vs_reference"))}'
                f' | {_fmt(peak / 2**20 if peak else None, ".0f")}'
                f' | {_fmt(run.get("ratio_memory_vs_ce_only"))} |')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    os.makedirs(args.out, exist_ok=True)
    tests = None if args.skip_tests else run_tests(args.out)
    runs = [] if args.skip_bench else run_bench(args.out, args.rounds)
    command = 'python tools/analysis_tools/gpu_check.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:])
    report = format_report(environment(), tests, runs, command.strip())
    path = osp.join(args.out, 'report.md')
    with open(path, 'w') as f:
        f.write(report)
    print(report)
    print(f'Written to {path}')
    failed = (tests and tests['returncode'] != 0) or any(
        'error' in run for run in runs)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
