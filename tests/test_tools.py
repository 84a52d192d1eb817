# Copyright (c) ffl_mm contributors.
"""End-to-end runs of tools/train.py, tools/test.py and the dist scripts."""
import os
import os.path as osp
import random
import re
import sys

import pytest
import torch

from conftest import REPO, TINY_DIGITS, run_cmd, run_tool

STOCK = 'configs/baselines/resnet18-cifar-w16_digits.py'


def _free_port():
    return str(random.randint(20000, 40000))


def test_train_resume_and_test(tmp_path):
    work = str(tmp_path / 'work')
    # 64 images, batch 16: 4 iterations an epoch
    _, out = run_tool('train.py', STOCK, '--work-dir', work, '--cfg-options',
                      *TINY_DIGITS, 'train_cfg.max_epochs=1')
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert re.search(r'Epoch\(train\) \[1\]\[4/4\]', out)

    _, out = run_tool('train.py', STOCK, '--work-dir', work, '--resume',
                      '--cfg-options', *TINY_DIGITS, 'train_cfg.max_epochs=2')
    assert 'Auto resumed from the latest checkpoint' in out
    assert 'resumed epoch: 1, iter: 4' in out
    # continues at the next iteration, not from scratch
    assert re.search(r'Epoch\(train\) \[2\]\[4/4\]', out)
    assert not re.search(r'Epoch\(train\) \[1\]', out)
    ckpt = torch.load(
        osp.join(work, 'epoch_2.pth'), map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 8 and ckpt['meta']['epoch'] == 2

    preds = str(tmp_path / 'preds.pkl')
    _, out = run_tool('test.py', STOCK, osp.join(work, 'epoch_2.pth'),
                      '--work-dir', str(tmp_path / 'test'), '--out', preds,
                      '--cfg-options', *TINY_DIGITS)
    top1 = re.search(r'Epoch\(test\).*accuracy/top1: ([\d.]+)', out)
    assert top1 and 0.0 <= float(top1.group(1)) <= 100.0
    import mmengine
    results = mmengine.load(preds)
    assert len(results) == 40
    assert {'pred_score', 'pred_label', 'gt_label'} <= set(results[0])


def test_test_rejects_checkpoint_of_another_model(tmp_path):
    from ffl_mm.registry import MODELS
    other = MODELS.build(
        dict(type='ResNet_CIFAR', depth=18, base_channels=8))
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': other.state_dict()}, path)
    code, out = run_tool(
        'test.py',
        STOCK,
        path,
        '--work-dir',
        str(tmp_path / 'test'),
        '--cfg-options',
        *TINY_DIGITS,
        check=False)
    assert code != 0
    assert 'missing keys' in out or 'size mismatch' in out
    assert 'Epoch(test)' not in out


def test_amp_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    code, out = run_tool(
        'train.py',
        STOCK,
        '--amp',
        '--work-dir',
        str(tmp_path),
        check=False)
    assert code != 0 and '--amp needs a CUDA device' in out


def test_dist_train_on_cpu_two_processes(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('the gloo path is for machines without CUDA')
    work = str(tmp_path / 'work')
    _, out = run_cmd(
        [
            'bash', 'tools/dist_train.sh', STOCK, '2', '--work-dir', work,
            '--cfg-options', *TINY_DIGITS, 'train_cfg.max_epochs=1'
        ],
        env=dict(PYTHON=sys.executable, PORT=_free_port()))
    assert 'initialised the gloo process group (rank 0/2)' in out
    # 64 images over 2 ranks of batch 16: 2 iterations an epoch
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', out)
    assert out.count('Saving checkpoint at 1 epochs') == 1
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    ckpt = torch.load(
        osp.join(work, 'epoch_1.pth'), map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2
    # keys without DDP's "module." prefix: loadable by a single process
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])

    # the same checkpoint evaluated by two processes
    _, out = run_cmd(
        [
            'bash', 'tools/dist_test.sh', STOCK,
            osp.join(work, 'epoch_1.pth'), '2', '--work-dir',
            str(tmp_path / 'test'), '--cfg-options', *TINY_DIGITS
        ],
        env=dict(PYTHON=sys.executable, PORT=_free_port()))
    assert re.search(r'Epoch\(test\) \[1/1\].*accuracy/top1: [\d.]+', out)


def test_dist_scripts_usage():
    code, out = run_cmd(['bash', 'tools/dist_train.sh'], check=False)
    assert code == 2 and 'usage' in out
    code, out = run_cmd(['bash', 'tools/dist_test.sh', 'a.py'], check=False)
    assert code == 2 and 'usage' in out


@pytest.mark.parametrize('method', ['ffl', 'mfef'])
def test_demo_trains_tests_and_tabulates(tmp_path, method):
    """tools/demo.py: FFL (MFEF) and its baseline through tools/train.py
    and tools/test.py, then the table with every output."""
    work = tmp_path / 'demo'
    _, out = run_tool('demo.py', '--method', method, '--seeds', '0',
                      '--work-dir', str(work), '--cfg-options', *TINY_DIGITS,
                      'train_cfg.max_epochs=1')
    # tools/test.py printed every output of the FFL model
    for key in ('accuracy/top1', 'accuracy/fused_top1',
                'accuracy/ensemble_top1', 'accuracy/branch0_top1',
                'accuracy/branch1_top1'):
        assert re.search(rf'Epoch\(test\).*{key}: [\d.]+', out), key
    # the FFL log shows every loss term and the ramp-up weight
    for key in ('loss_ce_branch0', 'loss_ce_fused', 'loss_kd_branch1',
                'loss_kd_fused', 'kd_weight'):
        assert key in out
    table = (work / 'results.md').read_text()
    name = method.upper()
    for row in (f'{name} branch 0', f'{name} branch 1', f'{name} ensemble',
                f'{name} fused', 'baseline (single ResNet-32)'):
        assert f'| {row} |' in table
    import json
    results = json.loads((work / 'results.json').read_text())
    assert results['seeds'] == [0]
    assert all(0 <= v[0] <= 100 for v in results['top1'].values())
    assert osp.isfile(work / f'{method}_seed0' / 'epoch_1.pth')
    # the analysis from the logs: table and non-empty plots
    analysis = (work / 'analysis' / 'results.md').read_text()
    assert f'| {name} fused |' in analysis and '| baseline' in analysis
    for png in ('accuracy.png', 'losses.png'):
        data = (work / 'analysis' / png).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
    assert f'tools/export.py {"configs/" + method}' in out


def _load_demo():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'ffl_demo', osp.join(osp.dirname(__file__), '..', 'tools',
                             'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_commands_and_table(tmp_path, monkeypatch):
    """Without --cfg-options the demo passes none to the tools (argparse
    rejects an empty --cfg-options), and the table sums up the seeds."""
    import json
    demo = _load_demo()
    calls = []

    def fake_run(args):
        calls.append(args)
        work = args[args.index('--work-dir') + 1]
        if args[0].endswith('train.py'):
            os.makedirs(work, exist_ok=True)
            with open(osp.join(work, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(work, 'epoch_15.pth'))
        else:
            fused = 'ffl_' in work
            seed = int(work[-1])
            metrics = {'accuracy/top1': 90.0 + seed}
            if fused:
                metrics.update({
                    'accuracy/fused_top1': 95.0 + seed,
                    'accuracy/ensemble_top1': 94.0,
                    'accuracy/branch0_top1': 93.0,
                    'accuracy/branch1_top1': 92.0
                })
            with open(args[args.index('--out') + 1], 'w') as f:
                json.dump(metrics, f)

    monkeypatch.setattr(demo, 'run', fake_run)
    monkeypatch.setattr(demo, 'analyze', lambda *args: [])
    rows = demo.main(['--seeds', '0', '2', '--work-dir', str(tmp_path)])
    test_calls = [c for c in calls if c[0].endswith('test.py')]
    assert len(calls) == 8 and len(test_calls) == 4
    assert all('--cfg-options' not in c for c in test_calls)
    assert rows['FFL fused'] == [95.0, 97.0]
    assert rows['baseline (single ResNet-32)'] == [90.0, 92.0]
    table = (tmp_path / 'results.md').read_text()
    assert '| FFL fused | 95.00 | 97.00 | 96.00 ± 1.41 |' in table


def test_mmpretrain_own_tools_run_our_config_unchanged(tmp_path):
    """MMPretrain's own tools/train.py and tools/test.py on a config of
    ours, with no extra flags: the config's ``custom_imports`` bring
    ffl_mm.engine.compat, so checkpoints are written atomically and
    ``--resume`` reads an MMEngine training checkpoint under torch >= 2.6
    (its plain loader refuses them) and continues at the next iteration;
    ``--tta`` (theirs and ours) averages every output over the views, so
    the selected (fused) top-1 equals ``fused_top1``."""
    import json

    from ffl_mm.engine.launch import mmpretrain_tool
    train = mmpretrain_tool('train').__file__
    test = mmpretrain_tool('test').__file__
    work = str(tmp_path / 'work')
    cfg = 'configs/ffl/ffl_resnet32x2_digits.py'
    run_cmd([sys.executable, train, cfg, '--work-dir', work, '--cfg-options',
             *TINY_DIGITS, 'train_cfg.max_epochs=1'])
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert not [f for f in os.listdir(work) if f.endswith('.tmp')]
    _, out = run_cmd([sys.executable, train, cfg, '--work-dir', work,
                      '--resume', '--cfg-options', *TINY_DIGITS,
                      'train_cfg.max_epochs=2'])
    assert 'resumed epoch: 1, iter: 4' in out
    assert re.search(r'Epoch\(train\) \[2\]\[4/4\]', out)
    ckpt = osp.join(work, 'epoch_2.pth')
    results = {}
    for name, tool in (('mmpretrain', test),
                       ('ours', osp.join('tools', 'test.py'))):
        out_file = str(tmp_path / f'{name}.json')
        run_cmd([sys.executable, tool, cfg, ckpt, '--tta', '--work-dir',
                 str(tmp_path / name), '--out', out_file, '--out-item',
                 'metrics', '--cfg-options', *TINY_DIGITS])
        with open(out_file) as f:
            results[name] = json.load(f)
    for metrics in results.values():
        assert metrics['accuracy/top1'] == metrics['accuracy/fused_top1']
        assert metrics['accuracy/top5'] == metrics['accuracy/fused_top5']
    # the same weights, loaded by either tool
    assert results['mmpretrain'] == results['ours']


@pytest.mark.parametrize('config', ['configs/ffl/ffl_resnet32x2_cifar100.py'])
def test_mmpretrain_browse_dataset_in_every_mode(config, tmp_path):
    """MMPretrain's visualization/browse_dataset.py on shipped configs: the
    visualiser dict carries no `_scope_` tag, and every mode draws (the
    pinned matplotlib works with MMEngine's visualiser). The CIFAR config
    reads tiny CIFAR-format files the test writes (MMPretrain's own parsing
    and md5 check)."""
    from ffl_mm.engine.launch import mmpretrain_tool, tool_argv
    tool = mmpretrain_tool('visualization/browse_dataset')
    options = []
    if 'cifar' in config:
        from mmpretrain.datasets import CIFAR100

        from test_stock_datasets import _write_cifar
        root = str(tmp_path / 'cifar')
        name = _write_cifar(root, CIFAR100, 100)
        options = ['--cfg-options', f'train_dataloader.dataset.type={name}',
                   f'train_dataloader.dataset.data_root={root}']
    for mode in ('original', 'transformed', 'concat', 'pipeline'):
        out = tmp_path / mode
        with tool_argv('browse_dataset.py', [
                osp.join(REPO, config), '-o', str(out), '-n', '1', '-m', mode,
                *options
        ]):
            tool.main()
        assert len(os.listdir(out)) == 1, mode


def test_mmpretrain_vis_tsne_says_to_export_a_branch(tmp_path):
    """MMPretrain's visualization/vis_tsne.py (and vis_cam.py) read
    ``model.backbone``: on a multi-branch model that stops with a message
    that says to export the branch first; ``hasattr`` stays False."""
    from ffl_mm.registry import MODELS

    from ffl_mm.engine.launch import mmpretrain_tool, tool_argv
    model = MODELS.build(
        dict(type='MultiBranchClassifier', num_branches=2,
             backbone=dict(type='CIFARResNet', depth=8),
             head=dict(type='LinearClsHead', num_classes=3)))
    assert not hasattr(model, 'backbone')
    with pytest.raises(AttributeError, match='tools/export.py CONFIG '
                       'CHECKPOINT --branch I'):
        model.backbone
    with pytest.raises(AttributeError, match='no attribute .nothing.'):
        model.nothing
    tool = mmpretrain_tool('visualization/vis_tsne')
    with tool_argv('vis_tsne.py', [
            osp.join(REPO, 'configs/ffl/ffl_resnet32x2_digits.py'),
            '--work-dir', str(tmp_path), '--max-num-class', '2',
            '--max-num-samples', '4', '--device', 'cpu'
    ]), pytest.raises(AttributeError, match='export'):
        tool.main()
