# Copyright (c) ffl_mm contributors.
"""MMEngine's ``Runner`` that owns its work dir and resumes mid-epoch."""
import copy

from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.runner import Runner

from ffl_mm.registry import RUNNERS
from ..preemption import restore_stop_signals
from ..work_dir import lock_work_dir, release_work_dir


def _name_bad_cifar_file(dataloader) -> None:
    """Raise ``DatasetCheckError`` naming the file when ``dataloader``'s
    data set is a CIFAR class and one of its files is not CIFAR images;
    return otherwise."""
    import os.path as osp

    from mmpretrain.datasets import CIFAR10

    from ffl_mm.registry import DATASETS
    from ..hooks.dataset_check_hook import check_cifar_split
    ds = dataloader.get('dataset') if isinstance(dataloader, dict) else None
    if not isinstance(ds, dict):
        return
    cls = ds.get('type')
    cls = DATASETS.get(cls) if isinstance(cls, str) else cls
    if not (isinstance(cls, type) and issubclass(cls, CIFAR10)):
        return
    prefix = ds.get('data_prefix') or ''
    root = osp.join(ds.get('data_root') or '',
                    prefix.get('root', '') if isinstance(prefix, dict)
                    else prefix)
    try:
        check_cifar_split(cls, root, ds.get('split', 'train'),
                          f'dataset {cls.__name__}(data_root={root!r})')
    except OSError:  # missing files: MMPretrain's own error stands
        return


@MMENGINE_RUNNERS.register_module(name='SafeRunner')
@RUNNERS.register_module()
class SafeRunner(Runner):
    """``Runner`` (same arguments) that:

    * takes the work dir's lock (:func:`~ffl_mm.engine.work_dir.
      lock_work_dir`, rank 0 only) before it writes anything: a second
      run, training or testing, in the work dir of a live one stops with
      ``SystemExit``
      naming the process that holds it, before MMEngine makes its log
      folder or rewrites the config copy. The lock is released when
      :meth:`train`, :meth:`val` or :meth:`test` returns or fails, and by
      the system when the process dies;
    * trains epoch-based configs (``train_cfg=dict(by_epoch=True, ...)``)
      with :class:`ResumableEpochBasedTrainLoop`, which continues a
      checkpoint saved mid-epoch (on SIGTERM) at the next batch.

    ``configs/_base_/default_runtime.py`` sets
    ``runner_type='SafeRunner'``, which every tool that builds the
    runner with ``RUNNERS.build(cfg)`` honours: ffl_mm's and MMPretrain's
    ``tools/train.py`` and ``test.py``, ``dist_train.sh``, ``mim``. A Python
    ``Runner.from_cfg(cfg)`` ignores ``runner_type``: build with
    ``RUNNERS.build(cfg)`` to get these guarantees.
    """

    def __init__(self, *args, **kwargs):
        work_dir = kwargs.get('work_dir', args[1] if len(args) > 1 else None)
        self._locked_dir = None
        taken_over = None
        if work_dir is not None:  # rank 0 only (lock_work_dir)
            taken_over = lock_work_dir(str(work_dir))
            self._locked_dir = str(work_dir)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._release()
            raise
        if taken_over:
            self.logger.warning(taken_over)

    def _release(self) -> None:
        if self._locked_dir is not None:
            release_work_dir(self._locked_dir)
            self._locked_dir = None

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """MMEngine's ``build_dataloader``; a CIFAR file that MMPretrain's
        reader cannot split into images (``cannot reshape array``) is named
        (:func:`~ffl_mm.engine.hooks.dataset_check_hook.
        check_cifar_split`)."""
        try:
            return Runner.build_dataloader(dataloader, seed, diff_rank_seed)
        except ValueError:
            _name_bad_cifar_file(dataloader)
            raise

    def build_train_loop(self, loop):
        if isinstance(loop, dict) and 'type' not in loop and \
                loop.get('by_epoch', False):
            loop = copy.deepcopy(loop)
            loop.pop('by_epoch')
            loop['type'] = 'ffl_mm.ResumableEpochBasedTrainLoop'
        return super().build_train_loop(loop)

    def train(self):
        try:
            return super().train()
        finally:
            restore_stop_signals()
            self._release()

    def val(self):
        try:
            return super().val()
        finally:
            self._release()

    def test(self):
        try:
            return super().test()
        finally:
            self._release()
