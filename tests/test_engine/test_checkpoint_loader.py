# Copyright (c) ffl_mm contributors.
"""The safe local checkpoint loader that ffl_mm.engine.compat installs into
MMEngine."""
import collections
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_checkpoint)
from ffl_mm.registry import MODELS

import ffl_mm  # noqa: F401
import ffl_mm.engine.compat  # noqa: F401  the safe loader, atomic writes
from ffl_mm.engine import (CheckpointLoadError, UnsafeCheckpointError,
                           load_from_safe_local)


class _RunsCode:
    """Pickles as a call that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _unicode(text):
    data = text.encode()
    return pickle.BINUNICODE + len(data).to_bytes(4, 'little') + data


def _crafted_getattr_pickle(marker, target):
    """Protocol-2 opcodes for ``getattr(<target>)('touch <marker>')``.

    ``target`` is pickle opcodes that push the object and attribute name.
    """
    return (pickle.PROTO + b'\x02' + pickle.GLOBAL +
            b'__builtin__\ngetattr\n' + target + pickle.TUPLE2 +
            pickle.REDUCE + _unicode(f'touch {marker}') + pickle.TUPLE1 +
            pickle.REDUCE + pickle.STOP)


#: __import__('os'), 'system'
_OS_SYSTEM = (pickle.GLOBAL + b'__builtin__\n__import__\n' + _unicode('os') +
              pickle.TUPLE1 + pickle.REDUCE + _unicode('system'))
#: HistoryBuffer, '__init__' (an allowed class, a forbidden attribute)
_BUFFER_INIT = (pickle.GLOBAL +
                b'mmengine.logging.history_buffer\nHistoryBuffer\n' +
                _unicode('__init__'))


def _mmengine_like_checkpoint():
    """What a Runner's checkpoint holds besides weights."""
    hub = MessageHub.get_instance('ffl_mm_test_ckpt')
    hub.update_scalar('train/loss', np.float64(1.25))
    hub.update_scalar('train/lr', 0.1)
    hub.update_info('epoch', 3)
    hub.update_info('iter', np.int64(66))
    scheduler_state = dict(
        milestones=collections.Counter({150: 1, 225: 1}), last_step=3)
    return dict(
        meta=dict(epoch=3, iter=66, seed=np.int64(7), cfg='model = dict()'),
        state_dict=collections.OrderedDict(w=torch.arange(4.)),
        optimizer=dict(state={}, param_groups=[dict(lr=0.1, params=[0])]),
        param_schedulers=[scheduler_state],
        message_hub=hub.state_dict())


def test_mmengine_checkpoint_round_trip(tmp_path):
    path = str(tmp_path / 'epoch_3.pth')
    torch.save(_mmengine_like_checkpoint(), path)
    # plain torch.load refuses it: that is the problem being solved
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(4.))
    assert ckpt['param_schedulers'][0]['milestones'] == collections.Counter(
        {150: 1, 225: 1})
    hub = MessageHub.get_instance('ffl_mm_test_ckpt_restored')
    hub.load_state_dict(ckpt['message_hub'])
    assert hub.get_info('epoch') == 3
    buffer = hub.get_scalar('train/loss')
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.current() == pytest.approx(1.25)
    assert buffer.mean() == pytest.approx(1.25)


def test_plain_state_dict_loads_into_model(tmp_path):
    model = MODELS.build(dict(type='ResNet_CIFAR', depth=18,
                              base_channels=8))
    path = str(tmp_path / 'weights.pth')
    torch.save(model.state_dict(), path)
    other = MODELS.build(dict(type='ResNet_CIFAR', depth=18,
                              base_channels=8))
    load_checkpoint(other, path, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key])


@pytest.mark.parametrize('writer', ['torch_zip', 'legacy_pickle'])
def test_code_running_pickle_is_refused(tmp_path, writer):
    marker = tmp_path / 'marker'
    path = str(tmp_path / 'evil.pth')
    payload = {'state_dict': {}, 'meta': _RunsCode(marker)}
    if writer == 'torch_zip':
        torch.save(payload, path)
    else:
        with open(path, 'wb') as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(path)
    message = str(info.value)
    assert path in message
    assert 'posix.system' in message
    assert 'Nothing in it was executed' in message
    assert not marker.exists()


@pytest.mark.parametrize('target, culprit', [
    (_OS_SYSTEM, '__import__'),
    (_BUFFER_INIT, "'__init__'"),
],
                         ids=['os.system', 'HistoryBuffer.__init__'])
def test_getattr_is_only_for_history_buffer(tmp_path, target, culprit):
    marker = tmp_path / 'marker'
    path = str(tmp_path / 'getattr.pth')
    with open(path, 'wb') as f:
        f.write(_crafted_getattr_pickle(marker, target))
    with pytest.raises(UnsafeCheckpointError, match=culprit):
        load_from_safe_local(path)
    assert not marker.exists()
    # the restricted getattr itself refuses anything but HistoryBuffer
    from ffl_mm.engine.checkpoint_loader import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        _history_buffer_getattr(os, 'system')
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        _history_buffer_getattr(HistoryBuffer, '__init__')


def test_damaged_and_missing_files(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save(_mmengine_like_checkpoint(), good)
    data = open(good, 'rb').read()
    truncated = str(tmp_path / 'truncated.pth')
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointLoadError, match='truncated'):
        CheckpointLoader.load_checkpoint(truncated)
    text = str(tmp_path / 'notes.pth')
    with open(text, 'w') as f:
        f.write('not a checkpoint')
    with pytest.raises(CheckpointLoadError, match='notes.pth'):
        CheckpointLoader.load_checkpoint(text)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'missing.pth'))


def test_init_cfg_pretrained_goes_through_the_safe_loader(tmp_path):
    marker = tmp_path / 'marker'
    path = str(tmp_path / 'pretrained.pth')
    torch.save({'state_dict': {}, 'meta': _RunsCode(marker)}, path)
    model = MODELS.build(
        dict(
            type='ResNet_CIFAR',
            depth=18,
            base_channels=8,
            init_cfg=dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(UnsafeCheckpointError):
        model.init_weights()
    assert not marker.exists()
    # and the same loader serves _load_checkpoint
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(path)
