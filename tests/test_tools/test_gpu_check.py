# Copyright (c) ffl_mm contributors.
"""``make test-gpu`` and ``make gpu-check`` on a machine without CUDA: both
end cleanly, saying there is nothing to check; the report the GPU check
writes, from benchmark results."""
import os.path as osp
import sys

import pytest
import torch

from conftest import REPO, run_cmd

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the machine without CUDA')


def _gpu_check():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'gpu_check', osp.join(REPO, 'tools', 'analysis_tools',
                              'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_without_cuda_says_there_is_nothing_to_check(
        tmp_path, capsys):
    tool = _gpu_check()
    assert tool.main(['--out', str(tmp_path / 'report')]) == 0
    assert capsys.readouterr().out.strip() == tool.NO_CUDA
    assert not (tmp_path / 'report').exists()


@pytest.mark.e2e
def test_cuda_tests_skip_cleanly_without_cuda():
    """What ``make test-gpu`` runs: every test marked cuda is collected and
    skipped with its reason; pytest exits 0. The marked tests live in
    tests/test_gpu/ (checked below), so only that folder is collected: the
    whole tree would import every test module for nothing."""
    import glob
    import os
    marker = 'mark.' + 'cuda'  # not this file's own text
    elsewhere = [
        path for path in glob.glob(osp.join(REPO, 'tests', '**', '*.py'),
                                   recursive=True)
        if 'test_gpu' + os.sep not in path and
        marker in open(path, encoding='utf-8').read()]
    assert elsewhere == [], 'cuda-marked tests outside tests/test_gpu/'
    code, out = run_cmd([sys.executable, '-m', 'pytest', 'tests/test_gpu',
                         '-m', 'cuda', '-rs', '-q', '-p', 'no:cacheprovider'],
                        check=False)
    assert code == 0, out[-3000:]
    assert 'needs a CUDA device (make test-gpu)' in out
    assert ' passed' not in out and 'failed' not in out
    assert 'skipped' in out.splitlines()[-1]


def test_report_has_the_device_the_tests_and_a_row_per_run():
    tool = _gpu_check()
    env = {'date (UTC)': '2026-12-06 12:00', 'torch': '2.14.1',
           'device': '1 x NVIDIA H100, 79 GiB, compute capability 9.0'}
    tests = dict(returncode=0, summary='9 passed in 80.00s', log='t.log')
    run = dict(
        config='configs/ffl/ffl_resnet32x2_cifar100.py', amp=True,
        variants=dict(model=dict(time=dict(median_ms=12.34),
                                 memory=dict(peak_bytes=3 * 2**20))),
        ratio_time_vs_ce_only=1.0211, ratio_time_model_vs_reference=0.998,
        ratio_memory_vs_ce_only=1.04)
    failed = dict(config='configs/one/one_resnet32x2_cifar100.py',
                  amp=False, error='exit code 1')
    report = tool.format_report(env, tests, [run, failed], 'make gpu-check')
    assert report.startswith('### GPU check, 2026-12-06 12:00\n')
    assert '- device: 1 x NVIDIA H100, 79 GiB' in report
    assert 'Tests marked `cuda`: 9 passed in 80.00s (exit code 0' in report
    assert '| ffl_resnet32x2_cifar100 | fp16 | 12.3 | 1.021 | 0.998 | 3 | ' \
        '1.040 |' in report
    assert '| one_resnet32x2_cifar100 | fp32 | failed: exit code 1 |' in \
        report
