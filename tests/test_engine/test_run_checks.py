# Copyright (c) ffl_mm contributors.
"""Checks that stop a run before it produces wrong results: data sets the
heads cannot predict, NaN/inf predictions, paramwise keys that match
nothing, checkpoints --resume cannot continue from (the tools that call them
end to end: tests/test_tools/test_cli_errors.py)."""
import types

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from conftest import ffl_cfg
from ffl_mm.engine import (check_resume_fits, find_resumable_checkpoint,
                           resolve_auto_resume, state_dict_differences)
from ffl_mm.engine.hooks import (DatasetCheckError, DatasetCheckHook,
                                 FiniteLossHook, NonFiniteOutputError,
                                 check_dataset, model_num_classes)
from ffl_mm.registry import DATASETS, MODELS


def _digits(**kwargs):
    return DATASETS.build(dict(type='Digits', split='test', pipeline=[],
                               **kwargs))


def test_labels_beyond_the_heads_name_the_data_set_label_and_num_classes():
    dataset = _digits()
    labels = dataset.get_gt_labels()
    assert check_dataset(dataset, 10, 'val_dataloader.dataset') is True
    first = int((labels >= 7).nonzero()[0][0])
    with pytest.raises(DatasetCheckError) as info:
        check_dataset(dataset, 7, 'test_dataloader.dataset')
    message = str(info.value)
    assert message.startswith("test_dataloader.dataset (Digits(split='test'"
                              f")): sample {first} has label "
                              f'{labels[first]} ')
    assert f'({(labels >= 7).sum()} of 450 samples outside 0..6; labels ' \
        'span 0..9)' in message
    assert 'num_classes=7' in message
    # num_classes unknown: only emptiness
    assert check_dataset(_digits(indices=5), None, 'x') is False


def test_an_empty_data_set_is_named(tmp_path):
    # (serialized, MMEngine fails on an empty list while building it: the
    # usual cause, an empty ann_file, is refused before, by the tools)
    empty = _digits(indices=[], serialize_data=False)
    assert len(empty) == 0
    with pytest.raises(DatasetCheckError,
                       match=r"^train_dataloader.dataset \(Digits\(split="
                       r"'test'\)\) holds no samples"):
        check_dataset(empty, 10, 'train_dataloader.dataset')
    from mmengine.config import Config

    from ffl_mm.tools_support.data_checks import check_data_paths
    (tmp_path / 'train.txt').write_text('\n  \n')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='CustomDataset', data_root=str(tmp_path),
        ann_file='train.txt'))))
    with pytest.raises(ValueError,
                       match=r"^train_dataloader.dataset.ann_file="
                       r"'train.txt' \(.*train.txt\) is empty: the data set "
                       'would hold no samples'):
        check_data_paths(cfg)
    (tmp_path / 'train.txt').write_text('\na.png 0\n')
    check_data_paths(cfg)


def test_the_hook_reads_num_classes_through_wrappers_and_checks_once():
    model = MODELS.build(ffl_cfg(num_classes=7))
    assert model_num_classes(model) == 7
    wrapped = types.SimpleNamespace(module=types.SimpleNamespace(
        module=model))  # DDP around TTA
    assert model_num_classes(wrapped) == 7
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        plain = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='CIFARResNet', depth=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=64)))
    assert model_num_classes(plain) == 4
    calls = []
    dataset = _digits()
    dataset.get_gt_labels = lambda: calls.append(1) or \
        type(dataset).get_gt_labels(dataset)
    runner = types.SimpleNamespace(
        model=model, val_dataloader=types.SimpleNamespace(dataset=dataset))
    hook = DatasetCheckHook()
    with pytest.raises(DatasetCheckError, match='num_classes=7'):
        hook.before_val(runner)
    hook.before_val(runner)  # the next validation: not read again
    assert calls == [1]


def test_non_finite_predictions_stop_evaluation_naming_the_field():
    hook = FiniteLossHook()
    good = [DataSample().set_pred_score(torch.tensor([0.2, 0.8]))
            for _ in range(3)]
    hook.after_test_iter(None, 0, outputs=good)  # nothing raised
    bad = good[:2] + [DataSample().set_pred_score(torch.tensor([0.2, 0.8]))]
    bad[2].set_field(torch.tensor([[0.5, float('nan')]]), 'branch_scores')
    with pytest.raises(NonFiniteOutputError,
                       match=r'^Non-finite branch_scores in test batch 4 '
                       r'\(sample 2 of the batch\)'):
        hook.after_test_iter(None, 4, outputs=bad)
    bad[2].set_field(torch.tensor([[0.5, 0.5]]), 'branch_scores')
    bad[2].set_pred_score(torch.tensor([float('inf'), 0.0]))
    with pytest.raises(NonFiniteOutputError,
                       match='^Non-finite pred_score in validation batch 1'):
        hook.after_val_iter(None, 1, outputs=bad)


def _optim_cfg(**custom_keys):
    return dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
                paramwise_cfg=dict(custom_keys=custom_keys))


def test_custom_keys_that_match_no_parameter_are_refused():
    """ffl_mm's schedules name CheckedOptimWrapperConstructor: an error,
    in scope ffl_mm and without a scope (outside a Runner). MMEngine's own
    constructor is left as it is (MMPretrain's schedules list keys, e.g.
    Swin's '.absolute_pos_embed', that not every model has)."""
    model = MODELS.build(ffl_cfg())
    typo = _optim_cfg(fusion_nek=dict(decay_mult=0.1),
                      heads=dict(decay_mult=0.5))
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        with pytest.raises(ValueError) as info:
            build_optim_wrapper(model, dict(
                typo, constructor='CheckedOptimWrapperConstructor'))
        assert str(info.value).startswith(
            "optim_wrapper.paramwise_cfg.custom_keys: 'fusion_nek' "
            '(closest module names: fusion_neck')
        assert 'match no parameter of FFLClassifier' in \
            str(info.value)
        build_optim_wrapper(model, typo)  # MMEngine's: ignores the key
        wrapper = build_optim_wrapper(
            model, dict(_optim_cfg(fusion_neck=dict(decay_mult=0.1)),
                        constructor='CheckedOptimWrapperConstructor'))
    with pytest.raises(ValueError, match="'fusion_nek'"):  # no scope
        build_optim_wrapper(model, dict(
            typo, constructor='CheckedOptimWrapperConstructor'))
    decay = {id(p): g['weight_decay']
             for g in wrapper.optimizer.param_groups for p in g['params']}
    assert decay[id(model.fusion_neck.depthwise.conv.weight)] == \
        pytest.approx(1e-5)
    assert decay[id(model.heads[0].fc.weight)] == pytest.approx(1e-4)
    # every shipped schedule of ffl_mm names the strict constructor
    from conftest import shipped_config
    for path in ('configs/ffl/ffl_resnet32x2_digits.py',
                 'configs/ffl/ffl_resnet32x2_cifar100.py',
                 'configs/ffl/ffl_resnet34x2_imagenet.py'):
        assert shipped_config(path).optim_wrapper.constructor == \
            'CheckedOptimWrapperConstructor', path


def test_checks_leave_a_tools_stand_ins_alone(capsys):
    """MMPretrain's vis_scheduler.py builds a config's schedule around a
    one-convolution model and a mock data set: the custom keys are not
    checked on a model that is not a classifier (a warning names them),
    and a loader whose data set is not a data set is not checked."""
    from unittest.mock import MagicMock

    import torch.nn as nn
    from mmengine.logging import MMLogger
    from mmengine.model import BaseModel

    class StandIn(BaseModel):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, *args, **kwargs):
            pass

    typo = dict(_optim_cfg(fusion_neck=dict(decay_mult=0.1)),
                constructor='CheckedOptimWrapperConstructor')
    MMLogger.get_instance('ffl_mm_test_stand_ins')  # prints to stdout
    wrapper = build_optim_wrapper(StandIn(), typo)
    assert "custom_keys ['fusion_neck'] match no parameter of StandIn" in \
        capsys.readouterr().out
    assert len(wrapper.optimizer.param_groups) >= 1
    loader = types.SimpleNamespace(dataset=MagicMock(metainfo=None))
    assert len(loader.dataset) == 0  # what made the hook refuse it
    runner = types.SimpleNamespace(model=StandIn(), train_dataloader=loader)
    DatasetCheckHook().before_train(runner)
    # a real, empty data set is still an error
    runner.train_dataloader = types.SimpleNamespace(
        dataset=_digits(indices=[], serialize_data=False))
    with pytest.raises(DatasetCheckError, match='holds no samples'):
        DatasetCheckHook().before_train(runner)


def _save(path, state_dict, epoch=1):
    torch.save(dict(meta=dict(epoch=epoch), state_dict=state_dict), path)


def test_resume_skips_a_checkpoint_with_non_finite_weights(tmp_path):
    _save(tmp_path / 'epoch_1.pth', {'w': torch.zeros(2)})
    _save(tmp_path / 'epoch_2.pth',
          {'w': torch.tensor([0.0, float('nan')]), 'n': torch.tensor(3)})
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    path, skipped = find_resumable_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_1.pth')
    assert skipped == [(str(tmp_path / 'epoch_2.pth'),
                        '1 weight tensor(s) hold NaN or inf (w): saved by a '
                        'run that diverged')]


def test_resume_errors_say_what_is_wrong(tmp_path):
    cfg = types.SimpleNamespace(work_dir=str(tmp_path))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    with pytest.raises(SystemExit) as info:
        resolve_auto_resume(cfg, 'auto')
    assert str(info.value).startswith(
        f'--resume: no checkpoint in {tmp_path} can be resumed from (1 '
        'found, each skipped for the reason above)')
    with pytest.raises(SystemExit, match=r'^--resume /nowhere/e.pth: cannot '
                       'resume from it: file does not exist.$'):
        resolve_auto_resume(cfg, '/nowhere/e.pth')
    _save(tmp_path / 'e.pth', {'w': torch.tensor([float('inf')])})
    with pytest.raises(SystemExit, match='NaN or inf'):
        resolve_auto_resume(cfg, str(tmp_path / 'e.pth'))
    assert resolve_auto_resume(cfg, None) is None
    # a remote checkpoint is left to MMEngine's file backends
    assert resolve_auto_resume(cfg, 's3://bucket/e.pth') == 's3://bucket/e.pth'


@pytest.mark.parametrize('change, expected', [
    (dict(num_branches=3),
     ['the checkpoint has 2 branches, the config 3',
      '20 tensor(s) missing from the checkpoint (backbones.2.layer3.0.bn1.'
      'bias, backbones.2.layer3.0.bn1.num_batches_tracked, backbones.2.'
      'layer3.0.bn1.running_mean, ...)',
      '6 tensor(s) of another shape (fusion_neck.depthwise.bn.bias: '
      'checkpoint (128,), config (192,);']),
    (dict(fusion_pre_neck=[dict(type='DualAttentionNeck', reduction=16)]),
     ['modules only in the config: fusion_pre_necks']),
    (dict(num_classes=100),
     ['6 tensor(s) of another shape (fusion_head.fc.bias: checkpoint (10,),'
      ' config (100,); fusion_head.fc.weight: checkpoint (10, 64), config '
      '(100, 64); heads.0.fc.bias: checkpoint (10,), config (100,); ...)']),
])
def test_what_differs_between_a_checkpoint_and_the_model(change, expected):
    saved = MODELS.build(ffl_cfg(depth=8)).state_dict()
    kwargs = dict(depth=8, **change)
    pre = kwargs.pop('fusion_pre_neck', None)
    cfg = ffl_cfg(**kwargs)
    if pre:
        cfg['fusion_pre_neck'] = pre
    if change.get('num_branches'):
        cfg['fusion_neck']['num_branches'] = 3
    found = state_dict_differences(MODELS.build(cfg).state_dict(), saved)
    for want in expected:
        assert any(f.startswith(want) for f in found), (want, found)
    assert state_dict_differences(saved, saved) == []


def test_resume_into_another_model_stops_before_anything_is_built(tmp_path):
    from mmengine.config import Config
    _save(tmp_path / 'epoch_1.pth', MODELS.build(ffl_cfg(depth=8))
          .state_dict())
    cfg = Config(dict(model=ffl_cfg(depth=8, num_branches=3),
                      default_scope='ffl_mm'))
    cfg.model.fusion_neck.num_branches = 3
    with pytest.raises(SystemExit) as info:
        check_resume_fits(cfg, str(tmp_path / 'epoch_1.pth'))
    message = str(info.value)
    assert message.startswith(f'--resume: {tmp_path}/epoch_1.pth does not '
                              'fit the model of ')
    assert 'the checkpoint has 2 branches, the config 3' in message
    assert f'load_from={tmp_path}/epoch_1.pth' in message
    cfg.model = ffl_cfg(depth=8)
    check_resume_fits(cfg, str(tmp_path / 'epoch_1.pth'))  # fits: silent


def test_ctrl_c_while_formatting_the_config_stays_an_interrupt(monkeypatch):
    """MMEngine's Config.pretty_text (called by every save) turns any
    exception of yapf, Ctrl-C included, into a SyntaxError."""
    import mmengine.config.config as config_module
    from mmengine.config import Config

    from ffl_mm.engine.hooks.safe_checkpoint_hook import interrupts_kept

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(config_module, 'FormatCode', interrupted)
    cfg = Config(dict(a=1))
    with pytest.raises(SyntaxError):  # MMEngine on its own
        cfg.pretty_text
    with pytest.raises(KeyboardInterrupt):
        with interrupts_kept():
            cfg.pretty_text
    with pytest.raises(SyntaxError, match='real'):
        with interrupts_kept():
            raise SyntaxError('real')


def test_a_failed_start_puts_the_config_copy_back(tmp_path):
    """The Runner rewrites work_dir/<config name> when it starts; if the
    run then fails before saving, the copy of the run that wrote the
    checkpoints comes back. After a save, the new copy stays."""
    from mmengine.config import Config

    from ffl_mm.engine.work_dir import config_copy_kept_on_failure
    source = tmp_path / 'mine.py'
    source.write_text('a = 1\n')
    cfg = Config.fromfile(str(source))
    cfg.work_dir = str(tmp_path / 'work')
    copy = tmp_path / 'work' / 'mine.py'
    copy.parent.mkdir()
    copy.write_text('a = 0  # the first run\n')
    with pytest.raises(RuntimeError):
        with config_copy_kept_on_failure(cfg):
            copy.write_text('a = 1\n')
            raise RuntimeError('bad data')
    assert copy.read_text() == 'a = 0  # the first run\n'
    with pytest.raises(KeyboardInterrupt):
        with config_copy_kept_on_failure(cfg):
            copy.write_text('a = 1\n')
            (tmp_path / 'work' / 'last_checkpoint').write_text('epoch_3.pth')
            raise KeyboardInterrupt
    assert copy.read_text() == 'a = 1\n'


def test_a_run_with_nothing_left_to_train_says_so(capsys):
    from mmengine.logging import MMLogger

    from ffl_mm.engine.hooks import ResumeCheckHook
    MMLogger.get_instance('ffl_mm_test_resume_check')
    by_iter = types.SimpleNamespace(train_loop=types.SimpleNamespace(),
                                    iter=99, max_iters=100, epoch=0,
                                    _resume=False)
    ResumeCheckHook().before_train(by_iter)  # one iteration left
    assert 'Nothing left' not in capsys.readouterr().out
    by_iter.iter = 100
    ResumeCheckHook().before_train(by_iter)
    assert 'Nothing left to train: the run starts at iteration 100 of ' \
        'train_cfg.max_iters=100' in capsys.readouterr().out


@pytest.mark.parametrize('option, value, match', [
    ('train_cfg.max_epochs', 'abc', r"train_cfg.max_epochs='abc': give a "
     r'whole number >= 1, e.g. --cfg-options train_cfg.max_epochs=300'),
    ('train_cfg.max_epochs', 0, r'train_cfg.max_epochs=0: give a whole'),
    ('train_cfg.max_epochs', -1, r'train_cfg.max_epochs=-1: give a whole'),
    ('randomness.seed', 'abc', r"randomness.seed='abc': give a whole number"),
    ('train_dataloader.dataset.indices', 0,
     r'train_dataloader.dataset.indices=0: give the number of samples'),
    ('val_dataloader.batch_size', 0, r'val_dataloader.batch_size=0'),
])
def test_config_values_are_named_before_anything_is_built(option, value,
                                                          match):
    """What MMEngine fails on late or cryptically (an ``int()`` error after
    the model and data are built, a scheduler error, numpy's casting error,
    "need at least one array to concatenate")."""
    from conftest import shipped_config
    from ffl_mm.tools_support.config_values import check_config_values
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_digits.py')
    check_config_values(cfg)  # as shipped
    cfg.merge_from_dict({option: value})
    with pytest.raises(ValueError, match=match):
        check_config_values(cfg)


@pytest.mark.parametrize('key, value, error, match', [
    ('lr', 'abc', TypeError, r"optim_wrapper.optimizer: lr must be a number, "
     r"got 'abc'"),
    ('lr', 1e39, ValueError, r'lr=1e\+39 overflows float32'),
    ('momentum', 5, ValueError, r'momentum=5.0 must be below 1'),
    ('weight_decay', -1e-4, ValueError, r'weight_decay must be >= 0'),
])
def test_optimizer_values_are_named_where_the_optimizer_is_built(
        key, value, error, match):
    """In the run (the constructor that ffl_mm's schedules name), so under
    any tool; ``momentum=5`` (a typo for 0.5) trained without a word."""
    model = MODELS.build(ffl_cfg())
    cfg = dict(_optim_cfg(fusion_neck=dict(decay_mult=0.1)),
               constructor='CheckedOptimWrapperConstructor')
    cfg['optimizer'] = dict(cfg['optimizer'], **{key: value})
    with pytest.raises(error, match=match):
        build_optim_wrapper(model, cfg)


def test_a_fractional_branch_count_says_what_to_give():
    with pytest.raises(TypeError, match=r'num_branches=2.0 \(float\); give '
                       'a whole number >= 2'):
        MODELS.build(ffl_cfg(num_branches=2.0))


@pytest.mark.parametrize('change, match', [
    (dict(row_values=28 * 28), r'data_batch_1 holds an array of shape '
     r'\(960, 784\), not rows of 3x32x32 = 3072 values'),
    (dict(extra_labels=4), r'data_batch_1 holds 16 images and 20 labels'),
])
def test_cifar_files_that_are_not_cifar_images_are_refused(tmp_path, change,
                                                           match):
    """Grey 28x28 rows in CIFAR-format pickles: MMPretrain reshapes 960 of
    them into 245 colour images with the first 245 labels, and trains. The
    hook refuses the file before the first step, naming it."""
    from mmpretrain.datasets import CIFAR10

    from conftest import write_cifar
    n = 960 if 'row_values' in change else 16
    name = write_cifar(str(tmp_path), CIFAR10, 10, n_per_file=n, **change)
    dataset = DATASETS.build(dict(type=name, data_root=str(tmp_path),
                                  split='train', pipeline=[]))
    if 'row_values' in change:
        assert len(dataset) == 5 * 960 * 784 // 3072  # silently reshaped
    runner = types.SimpleNamespace(
        model=MODELS.build(ffl_cfg(num_classes=10)),
        train_dataloader=types.SimpleNamespace(dataset=dataset))
    with pytest.raises(DatasetCheckError, match=match):
        DatasetCheckHook().before_train(runner)


def test_an_image_that_cannot_be_read_is_named(tmp_path):
    """A 0-byte JPEG ended in OpenCV's ``!buf.empty()`` with no file named:
    the hook makes any failure of a sample's pipeline name the data set,
    the sample and its file (with its size), whatever tool runs."""
    from conftest import write_imagenet
    from ffl_mm.engine.hooks import SamplePipelineError
    root = write_imagenet(str(tmp_path), num_classes=10, per_split=3)
    (tmp_path / 'train' / 'train_1.JPEG').write_bytes(b'')
    dataset = DATASETS.build(dict(
        type='mmpretrain.ImageNet', data_root=root, split='train',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')]))
    import cv2
    with pytest.raises(cv2.error, match='buf.empty'):
        dataset[1]  # as MMPretrain leaves it
    runner = types.SimpleNamespace(
        model=MODELS.build(ffl_cfg(num_classes=10)),
        train_dataloader=types.SimpleNamespace(dataset=dataset))
    DatasetCheckHook().before_train(runner)
    assert dataset[0]['inputs'].shape == (3, 40, 48)  # good samples load
    with pytest.raises(SamplePipelineError,
                       match=r'(?s)^train_dataloader.dataset \(ImageNet\): '
                       r'sample 1, .*train_1.JPEG \(0 bytes\), failed in '
                       r'its pipeline: error: .*buf.empty.*Fix or remove '
                       r'the file'):
        dataset[1]
    # the data loader's workers get the wrapped pipeline
    loader = torch.utils.data.DataLoader(dataset, batch_size=None,
                                         num_workers=1)
    with pytest.raises(Exception, match=r'train_1.JPEG \(0 bytes\)'):
        list(loader)


def test_a_truncated_cifar_file_is_named_before_anything_is_built(tmp_path):
    """A truncated pickle (in a data set class whose md5 table lists it)
    ended in ``pickle data was truncated`` with no file named."""
    from mmengine.config import Config
    from mmpretrain.datasets import CIFAR10

    from conftest import write_cifar
    from ffl_mm.tools_support.data_checks import check_data_paths
    name = write_cifar(str(tmp_path), CIFAR10, 10)
    cls = DATASETS.get(name)
    path = tmp_path / CIFAR10.base_folder / 'data_batch_2'
    path.write_bytes(path.read_bytes()[:100])
    from conftest import md5
    cls.train_list = [[n, md5(str(path)) if n == 'data_batch_2' else h]
                      for n, h in cls.train_list]
    ds = dict(type=name, data_root=str(tmp_path), split='train',
              pipeline=[])
    with pytest.raises(Exception, match='pickle data was truncated'):
        DATASETS.build(ds)  # as MMPretrain leaves it
    cfg = Config(dict(train_dataloader=dict(dataset=ds)))
    with pytest.raises(ValueError,
                       match=r'^train_dataloader.dataset: .*data_batch_2 '
                       r'\(100 bytes\) cannot be read as a CIFAR file '
                       r'\(UnpicklingError: pickle data was truncated\)'):
        check_data_paths(cfg)


def test_a_cifar_file_of_partial_images_is_named_under_any_tool(tmp_path):
    """A CIFAR-format pickle whose values do not divide into 3x32x32 images:
    MMPretrain's reader fails with ``cannot reshape array of size 1600``
    naming no file; the runner's data loader build (SafeRunner, any tool)
    names it."""
    from mmpretrain.datasets import CIFAR10

    from conftest import write_cifar
    from ffl_mm.engine.runner import SafeRunner
    name = write_cifar(str(tmp_path), CIFAR10, 10, n_per_file=16,
                       row_values=100)
    loader = dict(dataset=dict(type=name, data_root=str(tmp_path),
                               split='train', pipeline=[]),
                  batch_size=2, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    with pytest.raises(ValueError, match='cannot reshape array of size'):
        DATASETS.build(loader['dataset'])
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('ffl_mm'), pytest.raises(
            DatasetCheckError, match=r'data_batch_1 holds an array of shape '
            r'\(16, 100\), not rows of 3x32x32'):
        SafeRunner.build_dataloader(loader)
