# Copyright (c) ffl_mm contributors.
"""The config snippets of the README work as written."""
import re

import torch
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import REPO


def _section(title):
    text = open(f'{REPO}/README.md', encoding='utf-8').read()
    start = text.index(f'## {title}\n')
    end = text.find('\n## ', start + 1)
    return text[start:end]


def _python_blocks(text):
    return re.findall(r'```python\n(.*?)```', text, flags=re.S)


def test_use_ffl_with_your_backbone_snippets():
    blocks = _python_blocks(_section('Use FFL with your backbone'))
    assert len(blocks) == 2
    # 1: the heterogeneous model dict, built and trained one step
    scope = {}
    exec(blocks[0], scope)
    model = MODELS.build(scope['model'])
    assert model.fusion_neck.in_channels == [2048, 1280]
    assert [h.in_channels for h in model.heads] == [2048, 1280]
    x = torch.randn(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    losses = model(x, samples, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert model.fusion_neck.pointwise.conv.weight.grad is not None
    # 2: exactly the shipped config (every config is built by test_package)
    shipped = open(f'{REPO}/configs/ffl/ffl_resnet50x3_imagenet.py',
                   encoding='utf-8').read()
    assert blocks[1] == shipped
