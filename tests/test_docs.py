# Copyright (c) ffl_mm contributors.
"""The code blocks that the README and docs/ mark as tested work as written.

A block preceded by ``<!-- snippet: config -->`` is a whole config file (it
may inherit ffl_mm's configs through ``ffl_mm::``); one preceded by
``<!-- snippet: model -->`` defines ``model``; ``<!-- snippet: method -->``
registers a classifier and defines a ``model`` of it. Each is built and
trains one step. Links between the documents point at files that exist,
and nothing points outside the repository."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401  (the ffl_mm:: config scope)
from conftest import REPO
from helpers.doc_snippets import DOCS, SNIPPETS
from ffl_mm.registry import MODELS

def test_the_docs_mark_their_snippets():
    assert len(SNIPPETS) >= 5
    assert {p.values[0] for p in SNIPPETS} == {'config', 'model', 'method'}


def _one_step(model, num_classes, size=64):
    model.train()
    inputs = torch.rand(2, 3, size, size) * 255
    samples = [DataSample().set_gt_label(i) for i in (0, num_classes - 1)]
    data = model.data_preprocessor(
        dict(inputs=list(inputs.to(torch.uint8)), data_samples=samples),
        True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters()
               if p.requires_grad)


@pytest.fixture
def registered_here():
    """Types a snippet registers (a method's class) are removed after it."""
    before = set(MODELS.module_dict)
    yield
    for name in set(MODELS.module_dict) - before:
        MODELS.module_dict.pop(name)


@pytest.mark.parametrize('kind, code', SNIPPETS)
def test_snippet_builds_and_trains_a_step(kind, code, tmp_path,
                                          registered_here):
    if kind == 'config':
        path = tmp_path / 'snippet.py'
        path.write_text(code)
        cfg = Config.fromfile(str(path))
        model_cfg = cfg.model
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
        scope = cfg.get('default_scope', 'ffl_mm')
    else:
        namespace = {}
        exec(compile(code, 'snippet', 'exec'), namespace)
        model_cfg = namespace['model']
        scope = 'ffl_mm'
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
        model.init_weights()
        if kind == 'config':  # as the Runner builds it (custom keys checked)
            build_optim_wrapper(model, cfg.optim_wrapper)
    head = model_cfg.get('head') or model_cfg.get('fusion_head')
    _one_step(model, head['num_classes'])


LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')


@pytest.mark.parametrize('path', DOCS,
                         ids=[osp.relpath(p, REPO) for p in DOCS])
def test_links_point_at_files_in_the_repository(path):
    text = open(path, encoding='utf-8').read()
    assert '../shared' not in text
    for target in LINK.findall(text):
        if re.match(r'https?://', target):
            continue
        resolved = osp.normpath(osp.join(osp.dirname(path), target))
        assert resolved.startswith(REPO + osp.sep), (path, target)
        assert osp.exists(resolved), (path, target)


#: A file of this repository named in prose: under ffl_mm/, configs/,
#: tests/ or records/, with an extension (``tools/...`` paths may be
#: MMPretrain's).
OUR_FILE = re.compile(
    r'(?<![\w/.-])((?:ffl_mm|configs|tests|records)/[\w./-]*'
    r'\.(?:py|md|json|yml|pt))(?![\w*])')


@pytest.mark.parametrize('path', DOCS,
                         ids=[osp.relpath(p, REPO) for p in DOCS])
def test_files_the_docs_name_exist(path):
    """A doc describes the code of its commit: every file of ours it names
    exists (history lives in the changelog, which names no removed file)."""
    text = open(path, encoding='utf-8').read()
    missing = sorted({f for f in OUR_FILE.findall(text)
                      if not osp.exists(osp.join(REPO, f))})
    assert not missing, missing


def test_get_started_says_how_large_the_environment_is():
    """`make` builds a .venv of several GB (the registry's torch brings the
    CUDA libraries): a user about to run it reads the size first."""
    text = open(osp.join(REPO, 'docs', 'get_started.md'),
                encoding='utf-8').read()
    two_commands = text.split('## Two commands')[1].split('\n## ')[0]
    assert re.search(r'`\.venv` takes about \d+(\.\d+)? GB', two_commands)
