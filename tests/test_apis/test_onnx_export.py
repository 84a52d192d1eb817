# Copyright (c) ffl_mm contributors.
"""ONNX export of students and fused models: ONNX Runtime gives PyTorch's
logits on raw images; a module without an ONNX mapping is named."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope

import ffl_mm  # noqa: F401
from conftest import REPO, TINY_DIGITS
from ffl_mm.apis.model_cfg import runner_model_cfg
from ffl_mm.registry import MODELS

ox = pytest.importorskip('ffl_mm.apis.onnx_export')
pytest.importorskip('onnxruntime')

DIGITS = {
    method: f'{REPO}/configs/{method}/{method}_resnet32x2_digits.py'
    for method in ('ffl', 'mfef', 'dml', 'one')
}


def _trained_like(cfg_path):
    """The config's model with BN statistics moved off their defaults."""
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        torch.manual_seed(0)
        model = MODELS.build(runner_model_cfg(cfg))
    model.init_weights()
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32), mode='tensor')
    return cfg, model.eval()


def test_the_graph_normalises_raw_rgb_images_as_the_preprocessor():
    """RGB 0..255 in: the wrapper flips to the model's order and
    normalises as the data preprocessor does on the loader's BGR images."""
    for to_rgb in (True, False):
        model = MODELS.build(dict(
            type='mmpretrain.ImageClassifier',
            data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                                   mean=[10., 20., 30.], std=[2., 4., 8.],
                                   to_rgb=to_rgb),
            backbone=dict(type='mmpretrain.ResNet_CIFAR', depth=18),
            neck=dict(type='mmpretrain.GlobalAveragePooling'),
            head=dict(type='mmpretrain.LinearClsHead', num_classes=3,
                      in_channels=512))).eval()
        module = ox.ImagesToLogits(model).eval()
        assert module.flip is (not to_rgb)
        bgr = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
        with torch.no_grad():
            got = module(ox.graph_input(bgr))
        torch.testing.assert_close(got, ox.reference_logits(module, bgr))
        spec = ox.input_spec(module, (8, 8), ['a', 'b', 'c'])
        assert spec['input']['channel_order'] == 'RGB'
        assert spec['normalization']['mean'] == [10., 20., 30.]
        assert spec['classes'] == ['a', 'b', 'c'] and spec['opset'] == 18


@pytest.mark.e2e
def test_export_tool_writes_checked_onnx_of_a_student_and_the_fused_model(
        tmp_path, capsys, monkeypatch):
    """tools/export.py --onnx: the .onnx and its .json; ONNX Runtime on
    the config's own test images (digits ship with ffl_mm) within 1e-4
    of PyTorch, any batch size."""
    from mmengine.runner import save_checkpoint

    from conftest import tool_module
    cfg, model = _trained_like(DIGITS['ffl'])
    ckpt = tmp_path / 'ffl.pth'
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(
        dataset_meta=dict(classes=[str(i) for i in range(10)]))), str(ckpt))
    for which in (['--branch', '1'], ['--fused']):
        tool_module('export.py').main([
            DIGITS['ffl'], str(ckpt), *which, '--out', str(tmp_path),
            '--onnx', '--cfg-options', *TINY_DIGITS])
        out = capsys.readouterr().out
        name = 'branch1' if which[0] == '--branch' else 'fused'
        path = tmp_path / f'ffl_resnet32x2_digits_{name}.onnx'
        assert f'onnx:       {path}\n' in out
        assert 'onnx graph: opset 18, dynamic batch; ONNX Runtime matches ' \
            'PyTorch on 8 images of the test data set (Digits): max |diff|' \
            in out
        # one self-contained graph: the weights fit protobuf's 2 GB
        assert not list(tmp_path.glob('*.data')) and 'onnx data' not in out
        spec = json.loads((tmp_path / (path.name + '.json')).read_text())
        assert spec['input']['shape'] == ['batch', 3, 32, 32]
        assert spec['classes'] == [str(i) for i in range(10)]
        # any batch: 1 and 5 images against the model's own predictions
        images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
        logits = ox.onnx_logits(str(path), ox.graph_input(images))
        with torch.no_grad():
            x = model.data_preprocessor(dict(inputs=images))['inputs']
            want = model(x, mode='tensor')[name].numpy()
        assert logits.shape == (5, 10)
        np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)
        one = ox.onnx_logits(str(path), ox.graph_input(images[:1]))
        np.testing.assert_allclose(one, want[:1], atol=1e-4, rtol=0)
    # logits off by 1e-2 (above 1e-4 of their scale): refused, the file
    # named
    expected = torch.from_numpy(want)
    with pytest.raises(ox.OnnxExportError,
                       match=r'fused.onnx: ONNX Runtime gives other logits '
                       r'than PyTorch \(max \|diff\| 1.00e-02 > 0.0001 x '
                       r'[\d.]+, the largest \|logit\|'):
        ox.check_onnx(str(path), images, expected + 1e-2)
    # a re-export whose graph predicts otherwise: the tool stops with exit
    # status and the file named, and the earlier export stays whole (every
    # file is written and checked beside the destination first)
    before = {p.name: p.read_bytes() for p in tmp_path.glob('ffl_*')}
    monkeypatch.setattr(ox, 'export_onnx', lambda module, x, path: open(
        path, 'wb').write(b'another graph'))
    monkeypatch.setattr(ox, 'onnx_logits',
                        lambda path, images: np.zeros((len(images), 10)))
    with pytest.raises(SystemExit, match=r'export: .*_fused.onnx: ONNX '
                       'Runtime gives other logits than PyTorch'):
        tool_module('export.py').main([
            DIGITS['ffl'], str(ckpt), '--fused', '--out', str(tmp_path),
            '--onnx', '--cfg-options', *TINY_DIGITS])
    assert {p.name: p.read_bytes() for p in tmp_path.glob('ffl_*')} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]
    # a checked export that cannot be put in place (a directory where the
    # .onnx goes): nothing of the earlier export of that name changes
    monkeypatch.setattr(ox, 'check_onnx', lambda path, images, want: 0.)
    (tmp_path / 'blocked.onnx').mkdir()
    (tmp_path / 'blocked.py').write_text('earlier')
    with pytest.raises(SystemExit, match=r'export: cannot put the export '
                       rf'into {tmp_path}: .*blocked.onnx is a directory'):
        tool_module('export.py').main([
            DIGITS['ffl'], str(ckpt), '--fused', '--out', str(tmp_path),
            '--name', 'blocked', '--onnx', '--cfg-options', *TINY_DIGITS])
    assert sorted(p.name for p in tmp_path.glob('blocked*')) == [
        'blocked.onnx', 'blocked.py']
    assert (tmp_path / 'blocked.py').read_text() == 'earlier'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]


def test_files_replace_together_or_not_at_all(tmp_path, monkeypatch):
    """A move that fails half-way puts back every destination."""
    from ffl_mm.engine import atomic_backend
    stage = tmp_path / 'stage'
    stage.mkdir()
    for name in ('a', 'b'):
        (stage / name).write_text(f'new {name}')
        (tmp_path / name).write_text(f'old {name}')
    real = os.replace

    def failing(src, dst):
        if str(src).endswith('stage/b'):
            raise OSError(28, 'No space left on device')
        real(src, dst)

    monkeypatch.setattr(atomic_backend.os, 'replace', failing)
    with pytest.raises(OSError, match='No space left'):
        atomic_backend.replace_together(
            [(str(stage / n), str(tmp_path / n)) for n in ('a', 'b')])
    assert (tmp_path / 'a').read_text() == 'old a'
    assert (tmp_path / 'b').read_text() == 'old b'
    monkeypatch.setattr(atomic_backend.os, 'replace', real)
    atomic_backend.replace_together(
        [(str(stage / n), str(tmp_path / n)) for n in ('a', 'b')])
    assert (tmp_path / 'a').read_text() == 'new a'
    assert (tmp_path / 'b').read_text() == 'new b'


class NoOnnxMapping(nn.Module):
    """An op the exporter has no ONNX mapping for (a cumulative
    maximum)."""

    def forward(self, x):
        return torch.cummax(x, dim=1)[0]


def test_a_module_without_an_onnx_mapping_is_named(tmp_path):
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        student = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='CIFARResNet', depth=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3,
                      in_channels=64))).eval()
    student.backbone.layer2[0].conv1 = nn.Sequential(
        NoOnnxMapping(), student.backbone.layer2[0].conv1)
    module = ox.ImagesToLogits(student).eval()
    with pytest.raises(ox.OnnxExportError,
                       match=r'model.backbone.layer2.0.conv1.0 '
                       r'\(NoOnnxMapping\) does not export: .*No ONNX '
                       r"function found for .*aten.cummax"):
        ox.export_onnx(module, torch.rand(2, 3, 32, 32) * 255,
                       str(tmp_path / 'x.onnx'))
