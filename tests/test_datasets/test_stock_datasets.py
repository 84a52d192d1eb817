# Copyright (c) ffl_mm contributors.
"""The plugin's runtime trains a stock MMPretrain classifier through
MMPretrain's real CIFAR10/CIFAR100/ImageNet/CustomDataset classes on tiny
files that the tests write (no download)."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.datasets import CIFAR10, CIFAR100
from ffl_mm.registry import DATASETS
from PIL import Image

import ffl_mm  # noqa: F401
from conftest import REPO, tool_module, write_cifar

STOCK = osp.join(REPO, 'configs/baselines/resnet18-cifar-w16_digits.py')


def _write_image_folder(root, classes=('cat', 'dog'), per_class=8):
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for cls in classes:
            folder = osp.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(osp.join(folder, f'{i}.png'))


def _train_briefly(tmp_path, name, train_dataset, val_dataset, num_classes,
                   pipeline_prefix=()):
    cfg = Config.fromfile(STOCK)
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = f'stock_{name}'
    cfg.model.head.num_classes = num_classes
    cfg.data_preprocessor.num_classes = num_classes
    cfg.model.head.topk = (1, )
    cfg.train_cfg.max_epochs = 1
    train_pipeline = [*pipeline_prefix, dict(type='PackInputs')]
    for key, dataset in (('train_dataloader', train_dataset),
                         ('val_dataloader', val_dataset),
                         ('test_dataloader', val_dataset)):
        cfg[key].dataset = dict(**dataset, pipeline=train_pipeline)
        cfg[key].batch_size = 8
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.val_evaluator = cfg.test_evaluator = dict(
        type='Accuracy', topk=(1, ))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == len(runner.train_dataloader) > 0
    assert osp.isfile(osp.join(cfg.work_dir, 'epoch_1.pth'))
    metrics = runner.test()
    assert set(metrics) == {'accuracy/top1'}
    return runner


def test_cifar_files_load_through_our_data_base(tmp_path):
    """ffl_mm's CIFAR data config on CIFAR-format files: every sample
    through MMPretrain's parsing, our BorderPad-flip-crop pipeline."""
    root = str(tmp_path / 'cifar')
    name = write_cifar(root, CIFAR10, 10)
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/ffl/ffl_resnet32x2_cifar10.py'))
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(type=name, data_root=root, download=False)
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        dataset = DATASETS.build(dataset_cfg)
    # CIFAR10 has 5 train files of 16 images here
    assert len(dataset) == 16 * len(CIFAR10.train_list)
    sample = dataset[0]
    assert sample['inputs'].shape == (3, 32, 32)
    assert sample['data_samples'].gt_label.item() in range(10)


@pytest.mark.e2e
def test_image_folder_classes_train(tmp_path):
    root = str(tmp_path / 'imagenet')
    _write_image_folder(root)
    resize = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=32)]
    imagenet = dict(
        type='ImageNet', data_root=root, split='train', classes=['cat', 'dog'])
    dataset = DATASETS.build(imagenet)
    assert len(dataset) == 16
    assert dataset.get_data_info(15)['gt_label'] == 1
    _train_briefly(
        tmp_path,
        'ImageNet',
        imagenet,
        dict(type='CustomDataset', data_root=root, data_prefix='val'),
        num_classes=2,
        pipeline_prefix=resize)


def test_cifar_configs_collate_in_the_workers(tmp_path):
    """Under the tools (ours as MMPretrain's), the CIFAR configs stack
    batches in the data workers (one tensor per batch crosses to the main
    process); the classifier takes the stacked batch exactly as
    MMPretrain's list of images."""
    import copy

    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from ffl_mm.registry import MODELS

    from ffl_mm.apis.model_cfg import runner_model_cfg
    init_default_scope('ffl_mm')  # as the Runner of our configs
    tool = tool_module('train.py')
    config = osp.join(REPO, 'configs/ffl/ffl_resnet32x2_cifar100.py')
    cfg = tool.merge_args(Config.fromfile(config), tool.parse_args([config]))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].collate_fn == dict(type='default_collate'), key
    root = str(tmp_path / 'cifar')
    name = write_cifar(root, CIFAR100, 100)
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.dataset.update(type=name, data_root=root, download=False)
    loader_cfg.update(batch_size=8, num_workers=2)
    batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    assert isinstance(batch['inputs'], torch.Tensor)
    assert batch['inputs'].shape == (8, 3, 32, 32)
    assert batch['inputs'].dtype == torch.uint8
    assert len(batch['data_samples']) == 8

    model = MODELS.build(runner_model_cfg(cfg))
    as_list = dict(
        inputs=list(batch['inputs']), data_samples=batch['data_samples'])
    torch.testing.assert_close(
        model.data_preprocessor(batch, True)['inputs'],
        model.data_preprocessor(as_list, True)['inputs'])
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    log_vars = model.train_step(batch, wrapper)
    assert torch.isfinite(log_vars['loss'])
