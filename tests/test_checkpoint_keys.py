# Copyright (c) ffl_mm contributors.
"""Checkpoints keep loading: every shipped config's model has the
state-dict keys and shapes recorded in ``tests/data/state_dict_shapes.json``
(see ``tests/data/README.md``)."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config
from ffl_mm.registry import MODELS

import ffl_mm  # noqa: F401
from conftest import REPO
from ffl_mm.apis.model_cfg import runner_model_cfg

with open(osp.join(REPO, 'tests', 'data', 'state_dict_shapes.json')) as f:
    RECORDED = json.load(f)

CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    if '_base_' not in p)


def test_every_shipped_config_is_recorded():
    assert sorted(RECORDED) == CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_state_dict_keys_and_shapes_unchanged(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    model = MODELS.build(runner_model_cfg(cfg))
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want = RECORDED[config]
    assert sorted(set(got) - set(want)) == [], 'new keys'
    assert sorted(set(want) - set(got)) == [], 'missing keys'
    changed = {k: (want[k], got[k]) for k in want if got[k] != want[k]}
    assert changed == {}
