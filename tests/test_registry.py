# Copyright (c) ffl_mm contributors.
"""ffl_mm's registries: children of MMPretrain's in scope ``ffl_mm``,
holding every ffl_mm component (that ``ffl_mm.<Type>`` builds from any
scope without importing ffl_mm first: test_plugin_boundary.py)."""
import mmpretrain.registry as mmpretrain_registry
import pytest
import torch
from mmengine.registry import DefaultScope

import ffl_mm.registry as ffl_registry

OURS = {
    'MODELS': {
        'MultiBranchClassifier', 'FFLClassifier', 'ONEClassifier',
        'DMLClassifier', 'CIFARResNet', 'WideResNet', 'KDLoss',
        'MutualKDLoss', 'FFLFusionNeck', 'MultiScaleNeck',
        'DualAttentionNeck', 'MultiBranchTTA'
    },
    'METRICS': {'MultiBranchAccuracy'},
    'HOOKS': {'EpochSeedHook', 'FiniteLossHook', 'ResumeCheckHook'},
    'DATASETS': {'Digits'},
    'TRANSFORMS': {'BorderPad', 'LoadImageIfMissing'},
    'WEIGHT_INITIALIZERS': {'TorchDefault'},
    'OPTIM_WRAPPER_CONSTRUCTORS': {'CheckedOptimWrapperConstructor',
                                   'MergedGroupsOptimWrapperConstructor'},
}


@pytest.mark.parametrize('name', sorted(ffl_registry.ALL_REGISTRIES))
def test_every_node_is_a_child_of_mmpretrains(name):
    ours = ffl_registry.ALL_REGISTRIES[name]
    theirs = getattr(mmpretrain_registry, name)
    assert ours.scope == 'ffl_mm'
    assert ours.parent is theirs
    assert theirs._children['ffl_mm'] is ours


def test_components_register_in_ffl_mm_only():
    import ffl_mm  # noqa: F401
    for name, types in OURS.items():
        ours = getattr(ffl_registry, name)
        assert types <= set(ours.module_dict), (name, types)
        theirs = getattr(mmpretrain_registry, name)
        # nothing of ours in MMPretrain's or MMEngine's nodes, and no name
        # that shadows one of theirs
        assert not set(ours.module_dict) & set(theirs.module_dict), name
        # (also MMEngine's: see torch_default_init.py and
        # checked_constructor.py)
        assert not set(ours.module_dict) & set(
            theirs.parent.module_dict) - {
                'TorchDefault', 'CheckedOptimWrapperConstructor',
                'MergedGroupsOptimWrapperConstructor'}
    # ffl_mm's registry finds MMPretrain's and MMEngine's types too
    assert ffl_registry.MODELS.get('ResNet') is \
        mmpretrain_registry.MODELS.get('ResNet')
    assert ffl_registry.HOOKS.get('CheckpointHook') is not None


def test_nested_types_build_in_the_ffl_mm_scope():
    """An MMPretrain classifier around an ffl_mm backbone (what the
    baselines and exported branches are) builds under scope ``ffl_mm``,
    from MMPretrain's registry as well as ours; a bare ffl_mm name in
    MMPretrain's scope names the registry it was looked up in."""
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(type='CIFARResNet', depth=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64,
                  init_cfg=dict(type='TorchDefault', layer='Linear')))
    for registry in (ffl_registry.MODELS, mmpretrain_registry.MODELS):
        with DefaultScope.overwrite_default_scope('ffl_mm'):
            model = registry.build(cfg)
            model.init_weights()
        assert type(model.backbone).__name__ == 'CIFARResNet'
        assert model(torch.zeros(1, 3, 8, 8), mode='tensor').shape == (1, 3)
    # _scope_ on the outer dict: what ffl_mm's configs put on `model`
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = mmpretrain_registry.MODELS.build(dict(cfg, _scope_='ffl_mm'))
        assert type(model.backbone).__name__ == 'CIFARResNet'
        with pytest.raises(KeyError, match='CIFARResNet.*mmpretrain::model'):
            mmpretrain_registry.MODELS.build(cfg)


def test_model_zoo_names_reach_mmpretrains_model_hub(tmp_path):
    """After ``import ffl_mm``, MMPretrain's get_model, list_models and
    inferencers take the names of ffl_mm's metafiles (every model of
    model-index.yml), as they take MMPretrain's own."""
    import numpy as np
    import yaml
    from mmengine.runner import save_checkpoint
    from mmpretrain import (ImageClassificationInferencer, get_model,
                            list_models)

    import ffl_mm  # noqa: F401
    from conftest import REPO
    names = set()
    with open(f'{REPO}/model-index.yml') as f:
        for metafile in yaml.safe_load(f)['Import']:
            with open(f'{REPO}/{metafile}') as m:
                names |= {x['Name'] for x in yaml.safe_load(m)['Models']}
    assert len(names) >= 20
    assert names <= set(list_models())
    assert set(list_models('one*')) == {n for n in names if
                                        n.startswith('one')}
    ffl_mm.registry.register_model_index()  # a second call changes nothing
    torch.manual_seed(0)
    model = get_model('ffl_resnet32x2_digits')
    assert type(model).__name__ == 'FFLClassifier'
    ckpt = str(tmp_path / 'ffl.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), ckpt)
    inferencer = ImageClassificationInferencer('ffl_resnet32x2_digits',
                                               pretrained=ckpt)
    image = np.random.RandomState(0).randint(0, 256, (32, 32, 3), np.uint8)
    result = inferencer(image)[0]
    assert 0 <= result['pred_label'] < 10
    assert len(result['pred_scores']) == 10
