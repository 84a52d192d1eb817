# Copyright (c) ffl_mm contributors.
"""Exported students and fused models predict as inside the multi-branch
model; branches load with MMPretrain alone; the inferencer works."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from ffl_mm.registry import MODELS

import ffl_mm  # noqa: F401
from conftest import REPO, shipped_config, tool_module
from ffl_mm.apis import export
from ffl_mm.apis.model_cfg import runner_model_cfg

# FFL on MMPretrain components only, with MMPretrain's CIFAR-10 data set in
# the config (never loaded here): exported branches need no ffl_mm.
SMALL_RESNET = dict(type='ResNet_CIFAR', depth=18, stem_channels=16,
                    base_channels=16)
MODELS_UNDER_TEST = {
    'shared_trunk': dict(backbone=SMALL_RESNET, num_branches=2,
                         shared_stages=2),
    'independent': dict(
        backbone=[SMALL_RESNET,
                  dict(type='MobileNetV2', widen_factor=0.35)],
        num_branches=None, shared_stages=0),
}

CONFIG = """_base_ = ['{repo}/configs/ffl/ffl_resnet32x2_cifar10.py']
model = dict(
    backbone={backbone!r},
    num_branches={num_branches!r},
    shared_stages={shared_stages!r},
    head=dict(_delete_=True, type='LinearClsHead', num_classes=10),
    fusion_neck=dict(_delete_=True, type='FFLFusionNeck'),
    fusion_head=dict(_delete_=True, type='LinearClsHead', num_classes=10))
"""

# argv: stand-in CIFAR-10 (JSON: root and md5 table), inputs, then (config,
# checkpoint, scores file) per exported model; the first model is also
# evaluated as MMPretrain's tools/test.py does (a Runner from its config)
LOAD_WITHOUT_FFL_MM = """
import json, sys
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain import get_model
from mmpretrain.datasets import CIFAR10
standin, inputs, rest = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
for config, ckpt, out in zip(rest[0::3], rest[1::3], rest[2::3]):
    model = get_model(config, pretrained=ckpt).eval()
    assert type(model).__name__ == 'ImageClassifier', type(model)
    with torch.no_grad():
        x = model.data_preprocessor(dict(inputs=torch.load(inputs)))['inputs']
        scores = torch.stack([s.pred_score for s in model.predict(x)])
    torch.save(scores, out)
for attr, value in standin['table'].items():
    setattr(CIFAR10, attr, value)
cfg = Config.fromfile(rest[0])
cfg.work_dir, cfg.load_from = 'test_work_dir', rest[1]
cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
cfg.test_dataloader.dataset.data_root = standin['root']
metrics = Runner.from_cfg(cfg).test()
print(json.dumps(dict(metrics=metrics, ffl_mm=any(
    m.startswith('ffl_mm') for m in sys.modules))))
"""


def export_in_process(capsys, *args):
    """tools/export.py's main() here (a fresh process costs seconds)."""
    tool_module('export.py').main([str(a) for a in args])
    return capsys.readouterr().out


def _setup(tmp_path, name):
    cfg_path = tmp_path / f'ffl_{name}.py'
    cfg_path.write_text(
        CONFIG.format(repo=REPO, **MODELS_UNDER_TEST[name]))
    cfg = Config.fromfile(str(cfg_path))
    torch.manual_seed(0)
    model = MODELS.build(runner_model_cfg(cfg))
    model.init_weights()
    # move the BN statistics away from their defaults, as training does
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) * 50 + 120, mode='tensor')
    model.eval()
    ckpt = tmp_path / f'ffl_{name}.pth'
    save_checkpoint(
        dict(state_dict=model.state_dict(),
             meta=dict(dataset_meta=dict(classes=[str(i)
                                                  for i in range(10)]))),
        str(ckpt))
    inputs = torch.randint(0, 256, (3, 3, 32, 32),
                           generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8).float()
    torch.save(inputs, tmp_path / 'inputs.pth')
    with torch.no_grad():
        samples = model.predict(
            model.data_preprocessor(dict(inputs=inputs))['inputs'])
    return cfg_path, ckpt, samples


@pytest.mark.e2e
def test_export_round_trip(tmp_path, capsys, standin_data):
    """Every branch of a shared-trunk and an independent FFL model exports
    to a plain ImageClassifier that predicts as inside the multi-branch
    model, loaded (and one of them evaluated on CIFAR-10 files, with the
    exported config's data set and evaluator) by MMPretrain alone in one
    fresh interpreter that never imports ffl_mm; the fused export predicts
    like the fused classifier."""
    from mmpretrain.datasets import CIFAR10
    plain, expected = [], []
    for name in MODELS_UNDER_TEST:
        (tmp_path / name).mkdir()
        # the same inputs for every model (a seeded generator)
        cfg_path, ckpt, samples = _setup(tmp_path / name, name)
        out_dir = tmp_path / name / 'exported'
        for branch in (0, 1):
            log = export_in_process(capsys, cfg_path, ckpt, '--branch',
                                    branch, '--out', out_dir)
            assert 'plain MMPretrain: loads without ffl_mm' in log
            stem = out_dir / f'ffl_{name}_branch{branch}'
            text = open(f'{stem}.py').read()
            assert 'ffl_mm' not in text and 'MultiBranch' not in text
            assert "default_scope = 'mmpretrain'" in text
            plain += [f'{stem}.py', f'{stem}.pth', f'{stem}.scores']
            expected.append(
                torch.stack([s.branch_scores[branch] for s in samples]))
            # the checkpoint is plain: weights_only loading, classifier keys
            state = torch.load(f'{stem}.pth', weights_only=True)
            assert state['meta']['dataset_meta']['classes'][0] == '0'
            assert all(k.split('.')[0] in ('backbone', 'neck', 'head')
                       for k in state['state_dict'])
        _check_fused(capsys, tmp_path / name, name, cfg_path, ckpt, samples)
    inputs = tmp_path / 'inputs.pth'
    torch.save(torch.load(tmp_path / name / 'inputs.pth'), inputs)
    standin = json.dumps(dict(
        root=standin_data['CIFAR10'],
        table={a: getattr(CIFAR10, a)  # the stand-in's (fixture-patched)
               for a in ('train_list', 'test_list', 'meta')}))
    result = subprocess.run(
        [sys.executable, '-c', LOAD_WITHOUT_FFL_MM, standin, str(inputs),
         *plain], capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['ffl_mm'] is False
    assert set(report['metrics']) == {'accuracy/top1', 'accuracy/top5'}
    for scores, want in zip(plain[2::3], expected):
        torch.testing.assert_close(torch.load(scores), want, rtol=0,
                                   atol=1e-5)


def _check_fused(capsys, tmp_path, name, cfg_path, ckpt, samples):
    out_dir = tmp_path / 'exported'
    log = export_in_process(capsys, cfg_path, ckpt, '--fused', '--out',
                            out_dir)
    assert 'needs ffl_mm' in log
    fused_cfg = str(out_dir / f'ffl_{name}_fused.py')
    assert Config.fromfile(fused_cfg).model.type == 'FFLClassifier'
    from mmpretrain import get_model
    model = get_model(fused_cfg,
                      pretrained=str(out_dir / f'ffl_{name}_fused.pth'))
    model.eval()
    inputs = torch.load(tmp_path / 'inputs.pth')
    with torch.no_grad():
        fused = model.predict(
            model.data_preprocessor(dict(inputs=inputs))['inputs'])
    torch.testing.assert_close(
        torch.stack([s.pred_score for s in fused]),
        torch.stack([s.fused_score for s in samples]), rtol=0, atol=1e-5)


def test_student_size_is_one_sub_network(tmp_path, capsys):
    cfg_path, ckpt, _ = _setup(tmp_path, 'shared_trunk')
    export_in_process(capsys, cfg_path, ckpt, '--branch', 1, '--out',
                      tmp_path, '--name', 'student')
    state = torch.load(tmp_path / 'student.pth',
                       weights_only=True)['state_dict']
    single = MODELS.build(
        dict(type='ImageClassifier', backbone=SMALL_RESNET,
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=10,
                       in_channels=128)))
    assert set(state) == set(single.state_dict())
    assert sum(v.numel() for v in state.values()) == sum(
        v.numel() for v in single.state_dict().values())


def test_export_errors(tmp_path):
    cfg_path, ckpt, _ = _setup(tmp_path, 'shared_trunk')
    with pytest.raises(SystemExit, match='--branch 2 does not exist: the '
                       'model has 2 branches'):
        tool_module('export.py').main(
            [str(cfg_path), str(ckpt), '--branch', '2', '--out',
             str(tmp_path)])
    # a checkpoint of another architecture is refused, keys named
    other = tmp_path / 'other.pth'
    save_checkpoint(dict(state_dict=MODELS.build(
        dict(type='ResNet', depth=18)).state_dict()), str(other))
    with pytest.raises(SystemExit, match=r'does not match(.|\n)*missing '
                       r'keys'):
        tool_module('export.py').main(
            [str(cfg_path), str(other), '--branch', '0', '--out',
             str(tmp_path)])
    assert not osp.exists(tmp_path / 'ffl_shared_trunk_branch0.py')
    # a truncated checkpoint: what is wrong with the file, not a mismatch
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(SystemExit) as error:
        tool_module('export.py').main(
            [str(cfg_path), str(truncated), '--branch', '0', '--out',
             str(tmp_path)])
    assert str(error.value).startswith(
        f"export: Cannot read checkpoint '{truncated}'")
    assert 'does not match' not in str(error.value)


def test_demo_student_needs_ffl_mm_and_says_so(tmp_path):
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_digits.py')
    model = MODELS.build(cfg.model)
    out, state = export.export_branch(cfg, model, 0)
    # (the heads' TorchDefault initialiser is left out: the weights come
    # from the checkpoint)
    assert export.ffl_mm_types(out) == [
        'CIFARResNet', 'Digits', 'LoadImageIfMissing'
    ]
    assert 'init_cfg' not in out['model']['head']
    assert out['custom_imports']['imports'] == ['ffl_mm']
    # built in ffl_mm's scope, by the Runner and by MMPretrain's get_model
    assert out['default_scope'] == 'ffl_mm'
    assert out['model']['_scope_'] == 'ffl_mm'
    assert out['test_evaluator']['type'] == 'Accuracy'
    assert out['model']['head']['in_channels'] == 64
    ce_only = {k: v for k, v in cfg.model.items()
               if k not in ('fusion_neck', 'fusion_head', 'distill_loss',
                            'test_cfg')}
    ce_only = MODELS.build(dict(ce_only, type='MultiBranchClassifier'))
    with pytest.raises(export.ExportError, match='no fusion neck'):
        export.export_fused(cfg, ce_only)


def test_inferencer_returns_the_selected_output(tmp_path):
    from mmpretrain import ImageClassificationInferencer
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_digits.py')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = str(tmp_path / 'ffl.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), ckpt)
    image = np.random.RandomState(0).randint(0, 256, (32, 32, 3), np.uint8)
    results = {}
    for mode in ('fused', 'branch1'):
        cfg.model.test_cfg = dict(predict=mode)
        inferencer = ImageClassificationInferencer(cfg, pretrained=ckpt)
        result = inferencer(image)[0]
        sample = inferencer(image, return_datasamples=True)[0]
        assert sample.branch_scores.shape == (2, 10)
        selected = sample.fused_score if mode == 'fused' else \
            sample.branch_scores[1]
        np.testing.assert_allclose(result['pred_scores'],
                                   selected.numpy(), atol=1e-6)
        assert result['pred_label'] == int(selected.argmax())
        results[mode] = result['pred_scores']
    assert not np.allclose(results['fused'], results['branch1'])


def test_export_of_nan_weights_is_an_error(tmp_path):
    """NaN predictions on both sides: the comparison must not pass
    (``nan > tol`` is false)."""
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_digits.py')
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        model.heads[0].fc.weight.fill_(float('nan'))
    ckpt = str(tmp_path / 'nan.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), ckpt)
    with pytest.raises(SystemExit, match=r'predicts differently \(max '
                       r'\|diff\| nan'):
        tool_module('export.py').main(
            [f'{REPO}/configs/ffl/ffl_resnet32x2_digits.py', ckpt,
             '--branch', '0', '--out', str(tmp_path / 'out')])


@pytest.mark.e2e
def test_exports_of_a_shipped_cifar_config_evaluate_under_mmpretrains_test(
        tmp_path, capsys, standin_data):
    """Branch 0 and the fused model of the shipped CIFAR-100 FFL config:
    what tools/export.py writes evaluates with MMPretrain's own
    tools/test.py on CIFAR-100 files (its CIFARResNet branch imports ffl_mm
    through the exported config's custom_imports)."""
    from mmengine.logging import MMLogger

    from conftest import distinct_second
    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool, tool_argv
    config = f'{REPO}/configs/ffl/ffl_resnet32x2_cifar100.py'
    cfg = shipped_config(config)
    torch.manual_seed(0)
    model = MODELS.build(runner_model_cfg(cfg))
    model.init_weights()
    ckpt = str(tmp_path / 'ffl.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), ckpt)
    out_dir = tmp_path / 'exported'
    for how in (['--branch', 0], ['--fused']):
        export_in_process(capsys, config, ckpt, *how, '--out', out_dir,
                          '--name', f'm{len(how)}')
    for name, keys in (('m2', {'accuracy/top1', 'accuracy/top5'}),
                       ('m1', {'accuracy/top1', 'accuracy/fused_top1'})):
        metrics_file = str(tmp_path / f'{name}.json')
        distinct_second()
        MMLogger.get_instance(f'ffl_mm_test_export_{name}')
        with tool_argv('test.py', [
                str(out_dir / f'{name}.py'), str(out_dir / f'{name}.pth'),
                '--work-dir', str(tmp_path / name), '--out', metrics_file,
                '--out-item', 'metrics', '--cfg-options',
                'test_dataloader.dataset.data_root=' +
                standin_data['CIFAR100'],
                'test_dataloader.num_workers=0',
                'test_dataloader.persistent_workers=False']):
            mmpretrain_tool('test').main()
        with open(metrics_file) as f:
            assert keys <= set(json.load(f)), name
