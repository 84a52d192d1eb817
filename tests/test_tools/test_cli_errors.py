# Copyright (c) ffl_mm contributors.
"""Bad input to ffl_mm's tools stops them with an error that names the
problem, and loses nothing (tools called in this process)."""
import os
import os.path as osp
import re
import shutil

import pytest
import torch

from conftest import REPO, TINY_DIGITS

FFL = f'{REPO}/configs/ffl/ffl_resnet32x2_digits.py'
STOCK = f'{REPO}/configs/baselines/resnet18-cifar-w16_digits.py'


def _other_model_checkpoint(tmp_path):
    from ffl_mm.registry import MODELS
    other = MODELS.build(dict(type='ResNet_CIFAR', depth=18,
                              base_channels=8))
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': other.state_dict()}, path)
    return path


def test_test_rejects_checkpoint_of_another_model(tmp_path, run_in_process,
                                                  capsys):
    path = _other_model_checkpoint(tmp_path)
    with pytest.raises(RuntimeError,
                       match='missing keys|size mismatch|Missing key'):
        run_in_process('test.py', STOCK, path, '--work-dir',
                       str(tmp_path / 'test'), '--cfg-options', *TINY_DIGITS)
    assert 'Epoch(test)' not in capsys.readouterr().out


def test_amp_without_cuda_is_a_clear_error(tmp_path, run_in_process):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    with pytest.raises(SystemExit, match='--amp needs a CUDA device'):
        run_in_process('train.py', STOCK, '--amp', '--work-dir', tmp_path)


def test_resume_with_only_damaged_checkpoints_is_a_clear_error(
        tmp_path, run_in_process, capsys):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'PK\x03\x04 not really a zip')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    with pytest.raises(SystemExit, match='no checkpoint in .* can be resumed'):
        run_in_process('train.py', FFL, '--work-dir', work, '--resume',
                       '--cfg-options', *TINY_DIGITS)
    out = capsys.readouterr().out
    assert 'skipping' in out and 'epoch_2.pth: file does not exist' in out
    assert (work / 'epoch_1.pth').read_bytes().startswith(b'PK')  # kept


@pytest.mark.e2e
def test_nan_loss_stops_training_naming_the_term(tmp_path, run_in_process):
    from ffl_mm.engine.hooks import NonFiniteLossError
    # std 0: every input is inf or nan (a NaN loss_weight is refused at
    # build time: test_bad_kd_settings_name_the_value)
    with pytest.raises(NonFiniteLossError,
                       match=r'Non-finite loss at epoch 1, iteration 1 '
                       r'.*loss_ce_branch0=nan'):
        run_in_process('train.py', FFL, '--work-dir', tmp_path,
                       '--cfg-options', *TINY_DIGITS,
                       'data_preprocessor.std=[0.0,0.0,0.0]')
    assert not (tmp_path / 'epoch_1.pth').exists()


def test_missing_dataset_path_is_a_clear_error(tmp_path, run_in_process):
    with pytest.raises(FileNotFoundError,
                       match=r"train_dataloader.dataset.data_root='.*"
                       r"no_cifar' does not exist.*download=True"):
        run_in_process(
            'train.py', f'{REPO}/configs/ffl/ffl_resnet32x2_cifar100.py',
            '--work-dir', tmp_path, '--cfg-options',
            f'train_dataloader.dataset.data_root={tmp_path}/no_cifar')
    # ImageNet: no download; the message points at the doc that says where
    # the data goes, and that doc has the section
    with pytest.raises(FileNotFoundError) as info:
        run_in_process(
            'train.py', f'{REPO}/configs/ffl/ffl_resnet34x2_imagenet.py',
            '--work-dir', tmp_path, '--cfg-options',
            f'train_dataloader.dataset.data_root={tmp_path}/no_imagenet')
    assert 'download' not in str(info.value)
    doc, section = re.search(r'see (\S+), "(\w+)"', str(info.value)).groups()
    with open(osp.join(REPO, doc)) as f:
        assert f'\n## {section}\n' in f.read()


@pytest.mark.e2e
def test_load_from_another_architecture_is_reported(tmp_path,
                                                    run_in_process):
    path = _other_model_checkpoint(tmp_path)
    _, out = run_in_process('train.py', FFL, '--work-dir', tmp_path / 'w',
                            '--cfg-options', *TINY_DIGITS,
                            'train_dataloader.dataset.indices=16',
                            'train_cfg.max_epochs=1', f'load_from={path}')
    assert 'missing keys in source state_dict' in out
    assert 'unexpected key in source state_dict' in out


def test_crafted_checkpoint_is_refused_by_export(tmp_path, run_in_process):
    from ffl_mm.engine import UnsafeCheckpointError
    marker = tmp_path / 'pwned'

    class Evil:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': Evil()}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        run_in_process('export.py', FFL, path, '--branch', '0', '--out',
                       tmp_path / 'out')
    assert re.search(r'(os|posix)\.system', str(error.value))
    assert not marker.exists()


def test_a_damaged_cifar_file_is_named_before_any_download(tmp_path):
    """MMPretrain would start a download (``download`` defaults to True)
    and fail much later without naming the local file. (tools/train.py
    runs this check before building anything:
    test_missing_dataset_path_is_a_clear_error.)"""
    from mmpretrain.datasets import CIFAR10

    from conftest import shipped_config, write_cifar
    from ffl_mm.tools_support.data_checks import check_data_paths
    root = tmp_path / 'cifar'
    name = write_cifar(str(root), CIFAR10, 10)
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_cifar10.py')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.update(type=name,
                                                  data_root=str(root))
    check_data_paths(cfg)  # the files as written: fine
    damaged = root / CIFAR10.base_folder / 'data_batch_3'
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(FileNotFoundError,
                       match=r'train_dataloader.dataset: .*data_batch_3 '
                       r'does not have the MD5'):
        check_data_paths(cfg)
    damaged.unlink()
    with pytest.raises(FileNotFoundError, match=r'data_batch_3 is missing'):
        check_data_paths(cfg)


def test_a_work_dir_in_use_stops_a_second_run(tmp_path, run_in_process,
                                              mmpretrain_main, capsys):
    """A second run on a work dir that a live run holds stops at once
    naming that process; the lock of a dead one is taken over."""
    import subprocess
    import sys
    work = tmp_path / 'work'
    work.mkdir()
    lock = work / '.ffl_mm.lock'
    holder = subprocess.Popen([
        sys.executable, '-c',
        'import fcntl, os, sys, time\n'
        f'f = open({str(lock)!r}, "a+")\n'
        'fcntl.flock(f, fcntl.LOCK_EX)\n'
        'f.write(str(os.getpid())); f.flush()\n'
        'print("held", flush=True); time.sleep(60)\n'
    ], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(SystemExit,
                           match=rf'{work} is in use by another run '
                           rf'\(process {holder.pid}'):
            run_in_process('train.py', FFL, '--work-dir', work,
                           '--cfg-options', *TINY_DIGITS)
        # the lock lives in the run (SafeRunner): MMPretrain's own train.py
        # and test.py stop too, before they write anything
        for tool, argv in (('train', []), ('test', [str(work / 'x.pth')])):
            with pytest.raises(SystemExit,
                               match=rf'{work} is in use by another run '
                               rf'\(process {holder.pid}'):
                mmpretrain_main(tool, [FFL, *argv, '--work-dir', work,
                                       '--cfg-options', *TINY_DIGITS])
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(work)) == ['.ffl_mm.lock']
    # the holder died (its lock file stays): the next run takes over
    from ffl_mm.engine.work_dir import lock_work_dir, unlock_work_dirs
    try:
        message = lock_work_dir(str(work))
    finally:
        unlock_work_dirs()
    assert message == (f'took over the lock of work dir {work} left by '
                       f'process {holder.pid}, which is no longer running')
    # a run that ends (normally or not) releases the lock with no id left:
    # the next start, or one in a copy of the work dir, takes nothing over
    assert lock.read_text() == ''
    copy = tmp_path / 'copy'
    shutil.copytree(work, copy)
    try:
        assert lock_work_dir(str(work)) is None
        assert lock.read_text() == str(os.getpid())
        assert lock_work_dir(str(copy)) is None
    finally:
        unlock_work_dirs()


@pytest.mark.e2e
@pytest.mark.parametrize('failure', [KeyboardInterrupt, OSError])
def test_a_failed_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                      run_in_process,
                                                      failure):
    """``max_keep_ckpts=1`` and the epoch-2 save dies (Ctrl-C, a full
    disk): epoch 1's checkpoint and the pointer to it are still there
    (MMEngine's CheckpointHook deleted epoch 1 before writing epoch 2)."""
    from mmengine.runner import Runner
    real_save = Runner.save_checkpoint

    def dying_save(self, out_dir, filename, *args, **kwargs):
        if filename == 'epoch_2.pth':
            raise failure(28, 'No space left on device') \
                if failure is OSError else failure()
        return real_save(self, out_dir, filename, *args, **kwargs)

    monkeypatch.setattr(Runner, 'save_checkpoint', dying_save)
    work = tmp_path / 'work'
    with pytest.raises(failure):
        run_in_process('train.py', FFL, '--work-dir', work, '--cfg-options',
                       *TINY_DIGITS, 'train_dataloader.dataset.indices=16',
                       'train_cfg.val_interval=100', 'train_cfg.max_epochs=2',
                       'default_hooks.checkpoint.interval=1',
                       'default_hooks.checkpoint.max_keep_ckpts=1')
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    assert (work / 'last_checkpoint').read_text().endswith('epoch_1.pth')


@pytest.mark.e2e
def test_after_a_stop_the_advice_works_and_bad_starts_change_nothing(
        tmp_path, run_in_process):
    """One epoch, then what a user tries next: ``--resume`` into a model
    with 3 branches stops before the work dir changes; the stop advice
    (``load_from`` with a lower lr) trains on from the weights at the new
    lr; ``tools/test.py`` refuses NaN weights and data with more classes
    than the heads."""
    import numpy as np
    from PIL import Image

    from ffl_mm.engine.hooks import DatasetCheckError, NonFiniteOutputError
    from ffl_mm.engine.hooks.finite_loss_hook import RESTART_ADVICE
    work = tmp_path / 'work'
    quick = [*TINY_DIGITS, 'train_dataloader.dataset.indices=16',
             'train_cfg.val_interval=100', 'train_cfg.max_epochs=1']
    run_in_process('train.py', FFL, '--work-dir', work, '--cfg-options',
                   *quick)
    checkpoint = work / 'epoch_1.pth'
    copy = work / 'ffl_resnet32x2_digits.py'
    before = sorted(p.name for p in work.iterdir()), copy.read_bytes()
    copy.write_bytes(before[1] + b'# the copy of the first run\n')
    before = before[0], copy.read_bytes()

    with pytest.raises(SystemExit) as info:
        run_in_process('train.py', FFL, '--work-dir', work, '--resume',
                       '--cfg-options', *quick, 'model.num_branches=3')
    assert f'--resume: {checkpoint} does not fit the model of ' in \
        str(info.value)
    assert 'the checkpoint has 2 branches, the config 3' in str(info.value)
    assert (sorted(p.name for p in work.iterdir()), copy.read_bytes()) == \
        before

    # the advice, as printed
    options = re.search(r'--cfg-options (load_from=CHECKPOINT \S+=LR)',
                        RESTART_ADVICE).group(1)
    options = options.replace('CHECKPOINT', str(checkpoint))
    options = options.replace('LR', '0.001').split()
    _, out = run_in_process('train.py', FFL, '--work-dir', tmp_path / 'new',
                            '--cfg-options', *quick, *options)
    assert f'Load checkpoint from {checkpoint}' in out
    assert re.search(r'Epoch\(train\) \[1\]\[1/1\] .*lr: 1\.0000e-03', out)

    broken = torch.load(checkpoint, weights_only=False)
    broken['state_dict']['heads.0.fc.weight'][0, 0] = float('nan')
    torch.save(broken, tmp_path / 'nan.pth')
    with pytest.raises(NonFiniteOutputError,
                       match='^Non-finite branch_scores, ensemble_score in '
                       'test batch 0'):
        run_in_process('test.py', FFL, tmp_path / 'nan.pth', '--work-dir',
                       tmp_path / 'test', '--cfg-options', *TINY_DIGITS)

    images = tmp_path / 'images'
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(
            images / f'{i}.png')
    (images / 'ann.txt').write_text('0.png 3\n1.png 12\n2.png 0\n3.png 9\n')
    more = tmp_path / 'more_classes.py'
    more.write_text(
        f"_base_ = ['{FFL}']\n"
        'test_dataloader = dict(dataset=dict(\n'
        "    _delete_=True, type='CustomDataset',\n"
        f"    data_root='{images}', ann_file='ann.txt',\n"
        "    pipeline=[dict(type='LoadImageFromFile'),\n"
        "              dict(type='PackInputs')]))\n")
    with pytest.raises(DatasetCheckError,
                       match=r'^test_dataloader.dataset \(CustomDataset\(.*'
                       r'\)\): sample 1 has label 12 \(1 of 4 samples '
                       r'outside 0..9; labels span 0..12\), but the model.s '
                       'heads predict num_classes=10'):
        run_in_process('test.py', more, checkpoint, '--work-dir',
                       tmp_path / 'test', '--cfg-options', *TINY_DIGITS[:6])


def test_bad_schedule_values_stop_before_anything_is_built(tmp_path,
                                                           run_in_process):
    work = tmp_path / 'work'
    with pytest.raises(ValueError, match=r"train_cfg.max_epochs='abc': give "
                       'a whole number'):
        run_in_process('train.py', FFL, '--work-dir', work, '--cfg-options',
                       'train_cfg.max_epochs=abc')
    with pytest.raises(ValueError, match='randomness.seed'):
        run_in_process('test.py', FFL, tmp_path / 'none.pth', '--work-dir',
                       work, '--cfg-options', 'randomness.seed=abc')
    assert not work.exists()
