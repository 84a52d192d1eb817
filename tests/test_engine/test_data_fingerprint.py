# Copyright (c) ffl_mm contributors.
"""Each checkpoint records what the run trained on; a resume on other data
says what changed, and stops when labels changed meaning."""
from types import SimpleNamespace

import pytest
from mmengine.config import Config


def _folder(root, classes, per_class=3, skip=()):
    """An ImageNet-style folder (one sub-folder per class); the files are
    never decoded."""
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if (name, i) not in skip:
                (root / name / f'{i}.png').write_bytes(b'')
    return root


def _dataset(root, **kwargs):
    from mmpretrain.datasets import CustomDataset
    return CustomDataset(data_root=str(root), pipeline=[], **kwargs)


def _runner(dataset, iteration=8, **cfg):
    return SimpleNamespace(train_dataloader=SimpleNamespace(dataset=dataset),
                           iter=iteration, cfg=Config(cfg))


def _resume(saved_on, resumed_on, monkeypatch, iteration=8, **cfg):
    """Save a checkpoint's meta with one data set, resume on another;
    return the warnings logged."""
    from ffl_mm.engine.hooks import dataset_check_hook as module
    warnings = []
    monkeypatch.setattr(module, 'print_log',
                        lambda msg, **kw: warnings.append(msg))
    checkpoint = dict(meta={})
    module.DatasetCheckHook().before_save_checkpoint(_runner(saved_on),
                                                     checkpoint)
    hook = module.DatasetCheckHook()
    runner = _runner(resumed_on, iteration, **cfg)
    hook.after_load_checkpoint(runner, checkpoint)
    hook._check_resumed_data(runner)
    return checkpoint['meta']['ffl_mm_data'], warnings


def test_the_fingerprint_records_count_classes_and_sample_list(tmp_path):
    from ffl_mm.engine.hooks.data_fingerprint import data_fingerprint
    root = _folder(tmp_path / 'a', ['cat', 'dog'])
    first = data_fingerprint(_dataset(root))
    assert first['num_samples'] == 6
    assert first['classes'] == ['cat', 'dog']
    assert first == data_fingerprint(_dataset(root))
    subset = data_fingerprint(_dataset(root, indices=[0, 1, 2, 4, 5, 3]))
    assert subset['num_samples'] == 6
    assert subset['samples_sha1'] != first['samples_sha1']


def test_a_resume_on_other_data_is_named(tmp_path, monkeypatch):
    a = _folder(tmp_path / 'a', ['cat', 'dog'])
    # the same data: nothing said
    _, warnings = _resume(_dataset(a), _dataset(a), monkeypatch)
    assert warnings == []
    # a file added: the count
    grown = _folder(tmp_path / 'b', ['cat', 'dog'], per_class=4)
    _, warnings = _resume(_dataset(a), _dataset(grown), monkeypatch)
    assert len(warnings) == 1
    assert "it holds 8 samples, the checkpoint's run trained on 6" in \
        warnings[0]
    # another indices list of the same length
    _, warnings = _resume(_dataset(a, indices=[0, 1, 2]),
                          _dataset(a, indices=[3, 4, 5]), monkeypatch)
    assert 'the same number of samples (3) but another sample list' in \
        warnings[0]
    # load_from (iteration 0 after loading) is a new run: nothing compared
    _, warnings = _resume(_dataset(a), _dataset(grown), monkeypatch,
                          iteration=0)
    assert warnings == []


def test_a_resume_where_labels_changed_meaning_stops(tmp_path, monkeypatch):
    from ffl_mm.engine.hooks import DatasetCheckError
    a = _folder(tmp_path / 'a', ['cat', 'dog', 'eel'])
    renamed = _folder(tmp_path / 'b', ['cat', 'cow', 'eel'])
    with pytest.raises(DatasetCheckError,
                       match=r"its classes changed \(label 1: 'dog' -> "
                       r"'cow'\).*resume_with_other_classes=True"):
        _resume(_dataset(a), _dataset(renamed), monkeypatch)
    removed = _folder(tmp_path / 'c', ['cat', 'eel'])
    with pytest.raises(DatasetCheckError,
                       match=r"label 1: 'dog' -> 'eel', 3 classes -> 2"):
        _resume(_dataset(a), _dataset(removed), monkeypatch)
    # said to be intended: a warning
    _, warnings = _resume(_dataset(a), _dataset(renamed), monkeypatch,
                          resume_with_other_classes=True)
    assert "label 1: 'dog' -> 'cow'" in warnings[0]


def test_nothing_left_to_train_compares_epochs(monkeypatch):
    """Resumed at epoch 2 of 3 on a data set that shrank: max_iters (3 x
    the new batches) is below the iteration reached, but an epoch is
    left."""
    from ffl_mm.engine.hooks import resume_check_hook as module
    said = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: said.append(
        msg))
    runner = SimpleNamespace(iter=8, max_iters=6, epoch=2, max_epochs=3,
                             _resume=False,
                             train_loop=SimpleNamespace(max_epochs=3))
    module.ResumeCheckHook().before_train(runner)
    assert said == []
    runner.epoch = 3
    module.ResumeCheckHook().before_train(runner)
    assert 'Nothing left to train: the run starts at epoch 3' in said[0]
