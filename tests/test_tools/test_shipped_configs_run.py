# Copyright (c) ffl_mm contributors.
"""Each data set family and each method runs as a user runs it: the
CIFAR-100 configs of FFL, MFEF, DML, ONE, CL-ILR and OKDDip and the
ImageNet FFL config train one iteration, validate and test
(``tools/test.py``) on stand-in data of the config's own format, read by
MMPretrain's own data set classes; the CIFAR-100 FFL config also through
MMPretrain's own tools/train.py and tools/test.py. Everything else about
the configs stays as shipped (scopes, pipelines, hooks, evaluators)."""
import json
import os.path as osp
import re

import pytest

from conftest import REPO

# one iteration of two images, a validation and a test of two images (in
# this process: no data workers, which MMPretrain's tools make persistent)
TINY = [
    f'{loader}.{key}'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    for key in ('batch_size=2', 'dataset.indices=2', 'num_workers=0',
                'persistent_workers=False')
] + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
     'default_hooks.logger.interval=1', 'randomness.seed=0']

CONFIGS = {
    'configs/ffl/ffl_resnet32x2_cifar100.py': 'fused',
    'configs/mfef/mfef_resnet32x2_cifar100.py': 'fused',
    'configs/dml/dml_resnet32x2_cifar100.py': 'ensemble',
    'configs/one/one_resnet32x2_cifar100.py': 'ensemble',
    'configs/clilr/clilr_resnet32x3_cifar100.py': 'ensemble',
    'configs/okddip/okddip_resnet32x4_cifar100.py': 'branch3',
    'configs/ffl/ffl_resnet34x2_imagenet.py': 'fused',
}


def _options(config, roots):
    family = 'ImageNet' if 'imagenet' in config else 'CIFAR100'
    return ['--cfg-options', *TINY] + [
        f'{loader}.dataset.data_root={roots[family]}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]


def _train_and_test(train, test, config, roots, tmp_path):
    """Train with ``train(argv)``, test the checkpoint with ``test(argv)``;
    returns (training output, test metrics)."""
    work = str(tmp_path / 'work')
    cfg = osp.join(REPO, config)
    out = train([cfg, '--work-dir', work, *_options(config, roots)])
    assert re.search(r'Epoch\(train\) \[1\]\[1/1\]', out), out[-2000:]
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\]', out), out[-2000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    metrics_file = str(tmp_path / 'metrics.json')
    test([cfg, ckpt, '--work-dir', str(tmp_path / 'test'), '--out',
          metrics_file, '--out-item', 'metrics', *_options(config, roots)])
    with open(metrics_file) as f:
        return out, json.load(f)


@pytest.mark.e2e
@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_shipped_config_trains_validates_and_tests(config, standin_data,
                                                   run_in_process, tmp_path):
    def ours(tool):
        return lambda argv: run_in_process(tool, *argv)[1]

    out, metrics = _train_and_test(ours('train.py'), ours('test.py'), config,
                                   standin_data, tmp_path)
    selected = CONFIGS[config]
    # the selected output is what top-1 reports, and every output is there
    assert metrics['accuracy/top1'] == metrics[f'accuracy/{selected}_top1']
    assert {'accuracy/branch0_top1', 'accuracy/branch1_top1',
            'accuracy/ensemble_top1'} <= set(metrics)
    assert 0 <= metrics['accuracy/top1'] <= 100


@pytest.mark.e2e
def test_cifar100_ffl_config_under_mmpretrains_own_tools(
        standin_data, tmp_path, mmpretrain_main):

    def theirs(name):
        return lambda argv: mmpretrain_main(name, argv)

    config = 'configs/ffl/ffl_resnet32x2_cifar100.py'
    _, metrics = _train_and_test(theirs('train'), theirs('test'), config,
                                 standin_data, tmp_path)
    assert metrics['accuracy/top1'] == metrics['accuracy/fused_top1']
