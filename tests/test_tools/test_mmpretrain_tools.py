# Copyright (c) ffl_mm contributors.
"""MMPretrain's own tools (train, test with TTA, browse_dataset, vis_tsne)
on ffl_mm's configs, unchanged, called in this process."""
import os
import os.path as osp
import re

import pytest

from conftest import REPO, TINY_DIGITS, shipped_config, write_cifar


@pytest.mark.e2e
def test_mmpretrain_own_tools_run_our_config_unchanged(
        tmp_path, mmpretrain_main, run_in_process):
    """MMPretrain's own tools/train.py and tools/test.py on a config of
    ours, with no extra flags: the config's ``custom_imports`` bring
    ffl_mm.engine.compat, so checkpoints are written atomically and
    ``--resume`` reads an MMEngine training checkpoint under torch >= 2.6
    (its plain loader refuses them) and continues at the next iteration
    (and says when a finished run has nothing left to train);
    ``--tta`` (theirs and ours) averages every output over the views, so
    the selected (fused) top-1 equals ``fused_top1``."""
    import json
    work = str(tmp_path / 'work')
    cfg = osp.join(REPO, 'configs/ffl/ffl_resnet32x2_digits.py')
    mmpretrain_main('train', [cfg, '--work-dir', work, '--cfg-options',
                              *TINY_DIGITS, 'train_cfg.max_epochs=1'])
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert not [f for f in os.listdir(work) if f.endswith('.tmp')]
    out = mmpretrain_main('train', [cfg, '--work-dir', work, '--resume',
                                    '--cfg-options', *TINY_DIGITS,
                                    'train_cfg.max_epochs=2'])
    assert 'resumed epoch: 1, iter: 4' in out
    assert re.search(r'Epoch\(train\) \[2\]\[4/4\]', out)
    assert 'Nothing left to train' not in out
    assert 'Resumed with the checkpoint' not in out
    # resumed again, the config's lr and milestones changed, nothing left to
    # train: the log says all three (ResumeCheckHook)
    out = mmpretrain_main('train', [cfg, '--work-dir', work, '--resume',
                                    '--cfg-options', *TINY_DIGITS,
                                    'train_cfg.max_epochs=2',
                                    'optim_wrapper.optimizer.lr=0.01',
                                    'param_scheduler.milestones=[1]'])
    assert "optim_wrapper.optimizer.lr: the checkpoint's 0.05, the config " \
        '0.01' in out
    assert "param_scheduler.milestones: the checkpoint's [10, 13], the " \
        'config [1]' in out
    assert 'load_from=CHECKPOINT (without --resume)' in out
    assert 'Nothing left to train: the run starts at epoch 2 of ' \
        'train_cfg.max_epochs=2' in out
    assert 'Epoch(train)' not in out
    ckpt = osp.join(work, 'epoch_2.pth')
    results = {}
    for name in ('mmpretrain', 'ours'):
        out_file = str(tmp_path / f'{name}.json')
        argv = [cfg, ckpt, '--tta', '--work-dir', str(tmp_path / name),
                '--out', out_file, '--out-item', 'metrics', '--cfg-options',
                *TINY_DIGITS]
        if name == 'ours':
            run_in_process('test.py', *argv)
        else:
            mmpretrain_main('test', argv)
        with open(out_file) as f:
            results[name] = json.load(f)
    for metrics in results.values():
        assert metrics['accuracy/top1'] == metrics['accuracy/fused_top1']
        assert metrics['accuracy/top5'] == metrics['accuracy/fused_top5']
    # the same weights, loaded by either tool
    assert results['mmpretrain'] == results['ours']


@pytest.mark.e2e
@pytest.mark.parametrize('config', ['configs/ffl/ffl_resnet32x2_cifar100.py'])
def test_mmpretrain_browse_dataset_in_every_mode(config, tmp_path):
    """MMPretrain's visualization/browse_dataset.py on shipped configs: the
    visualiser dict carries no `_scope_` tag, and every mode draws (the
    pinned matplotlib works with MMEngine's visualiser). The CIFAR config
    reads tiny CIFAR-format files the test writes (MMPretrain's own parsing
    and md5 check)."""
    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool, tool_argv
    tool = mmpretrain_tool('visualization/browse_dataset')
    options = []
    if 'cifar' in config:
        from mmpretrain.datasets import CIFAR100

        root = str(tmp_path / 'cifar')
        name = write_cifar(root, CIFAR100, 100)
        options = ['--cfg-options', f'train_dataloader.dataset.type={name}',
                   f'train_dataloader.dataset.data_root={root}']
    for mode in ('original', 'transformed', 'concat', 'pipeline'):
        out = tmp_path / mode
        with tool_argv('browse_dataset.py', [
                osp.join(REPO, config), '-o', str(out), '-n', '1', '-m', mode,
                '--not-show', *options
        ]):
            tool.main()
        assert len(os.listdir(out)) == 1, mode


def test_mmpretrain_vis_tsne_says_to_export_a_branch(tmp_path, capsys):
    """MMPretrain's visualization/vis_tsne.py (and vis_cam.py) read
    ``model.backbone``: on a multi-branch model that stops with a message
    that says to export the branch first; ``hasattr`` stays False."""
    from ffl_mm.registry import MODELS

    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool, tool_argv
    model = MODELS.build(
        dict(type='MultiBranchClassifier', num_branches=2,
             backbone=dict(type='CIFARResNet', depth=8),
             head=dict(type='LinearClsHead', num_classes=3)))
    assert not hasattr(model, 'backbone')
    with pytest.raises(AttributeError, match='tools/export.py CONFIG '
                       'CHECKPOINT --branch I') as error:
        model.backbone
    # printed as Python prints it: the message, no "Did you mean:
    # 'backbones'?" after it
    import sys
    capsys.readouterr()
    sys.__excepthook__(error.type, error.value, error.tb)
    printed = capsys.readouterr().err
    assert printed.rstrip().endswith("then run the tool on DIR's config "
                                     'and checkpoint.'), printed[-200:]
    with pytest.raises(AttributeError, match='no attribute .nothing.'):
        model.nothing
    tool = mmpretrain_tool('visualization/vis_tsne')
    with tool_argv('vis_tsne.py', [
            osp.join(REPO, 'configs/ffl/ffl_resnet32x2_digits.py'),
            '--work-dir', str(tmp_path), '--max-num-class', '2',
            '--max-num-samples', '4', '--device', 'cpu'
    ]), pytest.raises(AttributeError, match='export'):
        tool.main()


@pytest.mark.parametrize('config', [
    'configs/ffl/ffl_resnet32x2_cifar100.py',
    'configs/mfef/mfef_resnet32x2_cifar100.py',
    'configs/ffl/ffl_resnet34x2_imagenet.py',
])
def test_mmpretrain_vis_scheduler_draws_our_schedules(
        config, tmp_path, monkeypatch):
    """MMPretrain's visualization/vis_scheduler.py builds the config's
    optimizer and schedule around a one-convolution stand-in model and a
    mock data set: ffl_mm's checks (custom keys, data sets) leave it alone,
    and the curve is the config's MultiStepLR, epoch by epoch."""
    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool, tool_argv
    cfg = shipped_config(config)
    tool = mmpretrain_tool('visualization/vis_scheduler')
    drawn = {}
    simulate = tool.simulate_train
    tool.simulate_train = lambda *a: drawn.setdefault('p', simulate(*a))
    png = tmp_path / 'lr.png'
    monkeypatch.chdir(tmp_path)  # its work_dir: ./work_dirs/<config name>
    with tool_argv('vis_scheduler.py', [
            osp.join(REPO, config), '--dataset-size',
            str(2 * cfg.train_dataloader.batch_size), '--ngpus', '1',
            '--save-path', str(png),
            '--not-show']):
        tool.main()
    assert png.stat().st_size > 0
    # the values it drew: 2 iterations per epoch
    lr0 = cfg.optim_wrapper.optimizer.lr
    sched = cfg.param_scheduler
    want = [lr0 * sched.gamma ** sum(e >= m for m in sched.milestones)
            for e in range(cfg.train_cfg.max_epochs) for _ in range(2)]
    assert drawn['p']['lr'] == pytest.approx(want)


@pytest.mark.e2e
def test_mmpretrain_vis_cam_on_a_digits_config_and_its_student(
        tmp_path, capsys):
    """MMPretrain's visualization/vis_cam.py on a shipped digits config:
    the digits test pipeline takes its image file, so the user reaches the
    message that says to export a branch; on the exported student it draws
    the class activation map."""
    import numpy as np
    import torch
    from mmengine.runner import save_checkpoint
    from PIL import Image

    from conftest import tool_module
    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool, tool_argv
    from ffl_mm.registry import MODELS
    config = osp.join(REPO, 'configs/ffl/ffl_resnet32x2_digits.py')
    torch.manual_seed(0)
    model = MODELS.build(shipped_config(config).model)
    model.init_weights()
    ckpt = str(tmp_path / 'ffl.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), ckpt)
    image = str(tmp_path / 'digit.png')
    Image.fromarray(np.random.RandomState(0).randint(
        0, 256, (32, 32, 3), np.uint8)).save(image)
    tool = mmpretrain_tool('visualization/vis_cam')
    cam = tmp_path / 'cam.png'
    with tool_argv('vis_cam.py', [image, config, ckpt, '--device', 'cpu',
                                  '--save-path', str(cam)]), \
            pytest.raises(AttributeError, match='--branch I'):
        tool.main()
    tool_module('export.py').main([config, ckpt, '--branch', '0', '--out',
                                   str(tmp_path), '--name', 'student'])
    with tool_argv('vis_cam.py', [
            image, str(tmp_path / 'student.py'),
            str(tmp_path / 'student.pth'), '--device', 'cpu',
            '--save-path', str(cam)]):
        tool.main()
    assert Image.open(cam).size[:2] == (32, 32)


@pytest.mark.e2e
def test_resume_choice_and_fit_hold_under_mmpretrains_tools(
        tmp_path, mmpretrain_main, run_in_process):
    """The run itself (ResumeCheckHook), not only ffl_mm's tools/train.py:
    under MMPretrain's own tools/train.py, ``--resume`` skips a damaged
    newest checkpoint for the previous good one, and ``resume=True`` with a
    checkpoint of another model stops with the message of ``--resume``."""
    from ffl_mm.engine.resume import ResumeError
    work = tmp_path / 'work'
    cfg = osp.join(REPO, 'configs/ffl/ffl_resnet32x2_digits.py')
    run_in_process('train.py', cfg, '--work-dir', work, '--cfg-options',
                   *TINY_DIGITS, 'train_cfg.max_epochs=1')
    good = work / 'epoch_1.pth'
    damaged = work / 'epoch_2.pth'
    damaged.write_bytes(good.read_bytes()[:1000])
    (work / 'last_checkpoint').write_text(str(damaged))
    out = mmpretrain_main('train', [cfg, '--work-dir', work, '--resume',
                                    '--cfg-options', *TINY_DIGITS,
                                    'train_cfg.max_epochs=2'])
    assert f'resume: skipping {damaged}' in out
    assert 'resumed epoch: 1, iter: 4' in out
    with pytest.raises(ResumeError, match=rf'resume: {good} does not fit the '
                       r'model of FFLClassifier: the checkpoint has 2 '
                       r'branches, the config 3; .*load_from='):
        mmpretrain_main('train', [cfg, '--work-dir', tmp_path / 'other',
                                  '--cfg-options', *TINY_DIGITS,
                                  'resume=True', f'load_from={good}',
                                  'model.num_branches=3'])
