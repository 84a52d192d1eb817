# Copyright (c) ffl_mm contributors.
"""ONNX export of FFL's students and fused models on MMPretrain's backbone
families, checked with ONNX Runtime (``make test-extras``: about three
seconds an export, too long for ``make test``; the tool's own test in
test_onnx_export.py runs there, every method's in the conformance suite's
slow rows)."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope

import ffl_mm  # noqa: F401
from ffl_mm.registry import MODELS
from helpers.backbone_cases import BACKBONES, ffl_on

ox = pytest.importorskip('ffl_mm.apis.onnx_export')
pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.extras

#: families whose export fails, and the error that says why: none of the
#: eleven of the any-backbone matrix (ResNet, ResNet_CIFAR, ResNeXt,
#: SEResNet, MobileNetV2/V3, ShuffleNetV2, RegNet, EfficientNet, ConvNeXt,
#: ViT) fails with torch 2.14 and opset 18
NOT_EXPORTABLE = {}


def _check(module, tmp_path, size=32):
    images = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    path = str(tmp_path / 'model.onnx')
    ox.export_onnx(module.eval(), ox.graph_input(images[:2]), path)
    return ox.check_onnx(path, images, ox.reference_logits(module, images))


def _settle(model, size=32):
    """BN statistics off their defaults, as after training."""
    model.init_weights()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size), mode='tensor')
    return model.eval()


@pytest.mark.parametrize('name', list(BACKBONES))
def test_ffl_students_and_fused_models_on_mmpretrain_backbones(
        name, tmp_path):
    backbone, _ = BACKBONES[name]
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        torch.manual_seed(0)
        model = _settle(MODELS.build(ffl_on(copy.deepcopy(backbone))))
    if name in NOT_EXPORTABLE:
        with pytest.raises(ox.OnnxExportError,
                           match=NOT_EXPORTABLE[name]):
            _check(ox.ImagesToLogits(model, 'branch0'), tmp_path)
        return
    for output in ('branch0', 'fused'):
        assert _check(ox.ImagesToLogits(model, output), tmp_path) <= 1e-4
