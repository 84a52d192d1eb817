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
    stand_in = _history_buffer_getattr(frozenset({'mean', '__init__'}))
    assert stand_in(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        stand_in(os, 'system')
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        stand_in(HistoryBuffer, 'update')  # a method, not a statistic


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


# ------------------------------------------- process-wide state and integrity
class _Buffer:
    """Pickles as a ``HistoryBuffer`` whose state carries ``methods`` as
    its statistics table (what MMEngine's ``__setstate__`` copies into the
    class-wide table)."""

    def __init__(self, methods):
        self.methods = methods

    def __reduce__(self):
        return (HistoryBuffer, (), dict(
            statistics_methods=self.methods, _max_length=10,
            _log_history=np.array([1.0, 3.0]), _count_history=np.array([1,
                                                                        1])))


def test_a_checkpoint_cannot_widen_what_getattr_allows(tmp_path):
    """The first buffer registers the name ``__init__`` (bound to an
    allowed method); the second then asks getattr for the real
    ``HistoryBuffer.__init__``."""
    path = str(tmp_path / 'widen.pth')
    torch.save(dict(state_dict={}, hub=[
        _Buffer({'__init__': HistoryBuffer.min}),
        _Buffer({'z': HistoryBuffer.__init__})
    ]), path)
    before = dict(HistoryBuffer._statistics_methods)
    with pytest.raises(UnsafeCheckpointError, match=r"widen\.pth.*__init__"):
        load_from_safe_local(path)
    assert HistoryBuffer._statistics_methods == before


def test_a_checkpoint_cannot_change_the_statistics_of_the_process(tmp_path):
    path = str(tmp_path / 'rebind.pth')
    torch.save(dict(state_dict={}, hub=_Buffer({'mean': HistoryBuffer.max})),
               path)
    with pytest.raises(UnsafeCheckpointError,
                       match=r"rebind\.pth.*'mean'.*max"):
        load_from_safe_local(path)
    assert HistoryBuffer._statistics_methods['mean'] is HistoryBuffer.mean
    assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 2.0


def _flip_in_tensor_data(path, offset=3):
    """Flip one byte inside the first tensor record of a torch zip file."""
    import zipfile
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist()
                    if '/data/' in i.filename and i.file_size > offset)
    with open(path, 'rb') as f:
        data = bytearray(f.read())
    # the local header: 30 bytes, the name, the extra field
    name_len = int.from_bytes(data[info.header_offset + 26:
                                   info.header_offset + 28], 'little')
    extra_len = int.from_bytes(data[info.header_offset + 28:
                                    info.header_offset + 30], 'little')
    start = info.header_offset + 30 + name_len + extra_len
    data[start + offset] ^= 0xFF
    with open(path, 'wb') as f:
        f.write(bytes(data))
    return info.filename


def test_a_flipped_byte_in_tensor_data_is_refused_naming_the_record(
        tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict={'w': torch.arange(64.)}, meta={}), path)
    record = _flip_in_tensor_data(path)
    # torch itself reads the damaged weights without a word
    damaged = torch.load(path, weights_only=True)['state_dict']['w']
    assert not torch.equal(damaged, torch.arange(64.))
    with pytest.raises(CheckpointLoadError,
                       match=rf"epoch_1\.pth.*{record}.*CRC"):
        load_from_safe_local(path)


def test_resume_skips_a_corrupted_checkpoint_for_the_previous_one(tmp_path):
    from ffl_mm.engine import find_resumable_checkpoint
    good = dict(state_dict={'w': torch.arange(64.)}, meta=dict(epoch=1))
    torch.save(good, tmp_path / 'epoch_1.pth')
    torch.save(dict(good, meta=dict(epoch=2)), tmp_path / 'epoch_2.pth')
    _flip_in_tensor_data(str(tmp_path / 'epoch_2.pth'))
    path, skipped = find_resumable_checkpoint(str(tmp_path))
    assert path.endswith('epoch_1.pth')
    assert len(skipped) == 1 and 'CRC' in skipped[0][1]


def test_zip_member_names_outside_the_archive_are_refused(tmp_path):
    import zipfile
    path = str(tmp_path / 'escape.pth')
    torch.save({'w': torch.zeros(2)}, path)
    with zipfile.ZipFile(path, 'a') as archive:
        archive.writestr('../outside.txt', b'x')
    with pytest.raises(CheckpointLoadError, match=r"escape\.pth.*\.\./"):
        load_from_safe_local(path)


def test_no_error_suggests_turning_safety_off(tmp_path):
    truncated = tmp_path / 'truncated.pth'
    torch.save(_mmengine_like_checkpoint(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'x': _RunsCode(tmp_path / 'marker')}, unsafe)
    for path, error in ((truncated, CheckpointLoadError),
                        (unsafe, UnsafeCheckpointError)):
        with pytest.raises(error) as info:
            load_from_safe_local(str(path))
        assert 'weights_only=False' not in str(info.value)
        assert 'weights_only' not in str(info.value).replace(
            'weights_only=True', '')


def test_a_plain_pickle_that_runs_code_is_unsafe_not_damaged(tmp_path):
    """A non-zip pickle (torch's legacy format or a bare pickle.dump) that
    would call os.system is refused as unsafe, so --resume stops instead of
    skipping it as damaged."""
    from ffl_mm.engine import find_resumable_checkpoint
    marker = tmp_path / 'pwned'
    for name, save in (
            ('legacy.pth', lambda obj, f: torch.save(
                obj, f, _use_new_zipfile_serialization=False)),
            ('bare.pth', lambda obj, f: pickle.dump(obj, f, protocol=2))):
        path = tmp_path / name
        with open(path, 'wb') as f:
            save({'state_dict': {}, 'x': _RunsCode(marker)}, f)
        with pytest.raises(UnsafeCheckpointError,
                           match=rf'{name}.*(os|posix)\.system'):
            load_from_safe_local(str(path))
    assert not marker.exists()
    work = tmp_path / 'work'
    work.mkdir()
    (tmp_path / 'bare.pth').rename(work / 'epoch_2.pth')
    with pytest.raises(UnsafeCheckpointError):
        find_resumable_checkpoint(str(work))


@pytest.mark.parametrize('protocol', [4, 5])
def test_a_framed_pickle_that_runs_code_is_unsafe_not_damaged(
        tmp_path, protocol):
    """Protocols 4 and 5 frame the pickle; torch's reader stops at the
    frame, before it sees the call."""
    path = tmp_path / 'framed.pth'
    with open(path, 'wb') as f:
        pickle.dump({'x': _RunsCode(tmp_path / 'pwned')}, f,
                    protocol=protocol)
    with pytest.raises(UnsafeCheckpointError,
                       match=r'framed\.pth.*(os|posix)\.system'):
        load_from_safe_local(str(path))
    # a framed pickle of plain data is not unsafe: unreadable, and says so
    with open(path, 'wb') as f:
        pickle.dump({'w': [1, 2]}, f, protocol=protocol)
    with pytest.raises(CheckpointLoadError,
                       match=r'framed\.pth.*Unsupported operand') as info:
        load_from_safe_local(str(path))
    assert 'weights_only' not in str(info.value)


def test_foreign_files_name_what_they_are(tmp_path):
    import io
    import tarfile
    script = tmp_path / 'scripted.pth'
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(script))
    archive = tmp_path / 'old.tar'
    with tarfile.open(archive, 'w') as tar:
        for name in ('sys_info', 'pickle', 'tensors', 'storages'):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b'\x80\x02N.'))
    for path, what in ((script, 'TorchScript archive.*torch.jit.load'),
                       (archive, 'tar archive')):
        with pytest.raises(CheckpointLoadError,
                           match=rf'{path.name}.*{what}') as info:
            load_from_safe_local(str(path))
        assert 'weights_only' not in str(info.value)


def test_a_fresh_process_loads_a_training_checkpoint(tmp_path, monkeypatch):
    """In a new process the statistics table is empty until the first
    HistoryBuffer: loading an MMEngine checkpoint fills in MMEngine's own
    four and nothing else, and is not taken for a change."""
    path = str(tmp_path / 'epoch_3.pth')
    torch.save(_mmengine_like_checkpoint(), path)
    monkeypatch.setattr(HistoryBuffer, '_statistics_methods', {})
    ckpt = load_from_safe_local(path)
    assert ckpt['meta']['epoch'] == 3
    assert HistoryBuffer._statistics_methods == {
        name: getattr(HistoryBuffer, name)
        for name in ('min', 'max', 'current', 'mean')}


def test_a_tensor_larger_than_its_storage_is_named(tmp_path):
    """A consistent archive (CRCs right) whose pickle gives a tensor more
    elements than its storage holds."""
    import zipfile
    good, bad = tmp_path / 'good.pth', tmp_path / 'oversized.pth'
    torch.save({'w': torch.zeros(7)}, good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, 'w') as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('data.pkl'):
                assert b'K\x07\x85' in data  # the size tuple (7,)
                data = data.replace(b'K\x07\x85', b'K\x7f\x85')
            out.writestr(info.filename, data)
    with pytest.raises(CheckpointLoadError,
                       match=r'oversized\.pth.*does not fit the storage'):
        load_from_safe_local(str(bad))


def test_a_fresh_process_loads_plain_weights(tmp_path, monkeypatch):
    """No HistoryBuffer in the file, none yet in the process: nothing to
    restore, nothing added."""
    path = str(tmp_path / 'weights.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}}, path)
    monkeypatch.setattr(HistoryBuffer, '_statistics_methods', {})
    assert set(load_from_safe_local(path)) == {'state_dict'}
    assert HistoryBuffer._statistics_methods == {}
