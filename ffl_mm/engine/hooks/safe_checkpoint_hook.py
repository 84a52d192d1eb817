# Copyright (c) ffl_mm contributors.
"""MMEngine's ``CheckpointHook`` that never deletes a checkpoint before the
new one is safely on disk."""
import contextlib
import logging
import os
import os.path as osp
import uuid
from collections import deque
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ffl_mm.registry import HOOKS
from ..atomic_backend import atomic_write, remove_stale_temporaries
from ..preemption import StopSignals, exit_by_signal, signal_name
from ..runner.resumable_loop import continue_mid_epoch, gather_rank_states
from .finite_loss_hook import RESTART_ADVICE, first_non_finite_output


class NonFiniteWeightsError(RuntimeError):
    """The weights to be saved hold NaN or infinite values, or predict
    them."""


def non_finite_tensors(model) -> list:
    """Names of the parameters and floating buffers of ``model`` that hold
    a NaN or an infinite value."""
    model = getattr(model, 'module', model)  # DDP
    named = list(model.named_parameters()) + [
        (n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    return [name for name, tensor in named
            if not bool(torch.isfinite(tensor.detach()).all())]


@contextlib.contextmanager
def interrupts_kept():
    """Let a Ctrl-C during a save stay a ``KeyboardInterrupt``.

    ``runner.save_checkpoint`` formats the config (``Config.pretty_text``),
    and MMEngine turns any exception of its formatter, Ctrl-C included,
    into ``SyntaxError: Failed to format the config file``.
    """
    try:
        yield
    except SyntaxError as error:
        if isinstance(error.__context__, KeyboardInterrupt):
            raise error.__context__ from None
        raise


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) that saves first and prunes after.

    MMEngine's hook removes the oldest kept checkpoint *before* it writes the
    new one, so a save that fails or is interrupted (a full disk, Ctrl-C)
    with ``max_keep_ckpts=1`` leaves no checkpoint at all, and with 2 costs
    the newest. This hook writes the new checkpoint, then the
    ``last_checkpoint`` pointer (atomically: MMEngine writes it with a plain
    ``open``), and only then removes checkpoints beyond ``max_keep_ckpts``.
    A failed save leaves every earlier checkpoint and the pointer as they
    were. On a full disk the run therefore stops instead of freeing the
    oldest file to make room: nothing that could be resumed is lost.

    Weights with a NaN or infinite value are never saved: the loss checked
    by ``FiniteLossHook`` is computed before the last step of an epoch, so
    that step can still ruin the weights. Nor are finite weights that have
    diverged (a far too high learning rate takes them to 1e9 and beyond):
    before a save, the model predicts the epoch's last training batch in
    evaluation mode, as validation will, and NaN or infinite scores stop the
    run. Either way the run stops with :class:`NonFiniteWeightsError`,
    ``last_checkpoint`` keeps naming the last good checkpoint and, with any
    ``max_keep_ckpts``, that checkpoint stays: ``--resume`` and
    ``resume=True`` continue from it. A Ctrl-C during a save is reported as the
    ``KeyboardInterrupt`` it is (MMEngine reports it as a config
    ``SyntaxError``).

    A stop signal (SIGTERM: ``scancel``, SLURM pre-emption, a spot
    instance, torchrun stopping its workers; SIGUSR1: ``sbatch
    --signal=B:USR1@120``) is acted on after the current training iteration
    (or at the end of a validation): every rank agrees to stop at the same
    iteration, the run saves ``epoch_E_iter_I.pth`` (``iter_I.pth`` for an
    iteration-based run) with what it needs to continue at the next batch
    (each rank's random state and buffers), points ``last_checkpoint`` at
    it, and the process ends by the signal it received, so that torchrun
    and SLURM report it as such. ``--resume`` continues from that batch with
    weights bit-identical to a run that was never stopped
    (``ResumableEpochBasedTrainLoop``, which ``SafeRunner`` uses). The file
    is removed at this run's next regular save.

    Every checkpoint records the run that wrote it (``meta['ffl_mm_run']``:
    an id that a resumed run keeps), and every message of this hook that
    names a checkpoint to resume from names one this run wrote.
    """

    _last_batch = None  # the last training batch, checked before a save
    _signals = None
    _own_last = None  # the newest checkpoint this run wrote
    _stop_file = None  # this run's signal checkpoint, removed at next save
    _loaded_meta = None
    run_id = None

    def before_run(self, runner) -> None:
        super().before_run(runner)
        if is_main_process():
            # in the run, not in a tool: MMPretrain's tools and mim too
            for directory in {d for d in (runner.work_dir, self.out_dir)
                              if isinstance(d, str)}:
                for path in remove_stale_temporaries(directory):
                    print_log(f'removed {path}, left by a writer that died',
                              logger='current')
        self._last_batch = None
        self._own_last = self._stop_file = self._loaded_meta = None
        self.run_id = uuid.uuid4().hex
        self._restore_signals()

    def after_load_checkpoint(self, runner, checkpoint) -> None:
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) \
            else None
        self._loaded_meta = meta if isinstance(meta, dict) else None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if runner.iter > 0 and self._loaded_meta is not None:
            # resumed (a load_from leaves the iteration at 0): the same run
            run = self._loaded_meta.get('ffl_mm_run') or {}
            if isinstance(run.get('id'), str):
                self.run_id = run['id']
            state = self._loaded_meta.get('ffl_mm_resume')
            if continue_mid_epoch(runner, state):
                # the signal checkpoint goes at this run's next regular save
                self._stop_file = osp.join(self.out_dir, state['file'])
        self._signals = StopSignals()
        self._signals.install()

    def after_train(self, runner) -> None:
        super().after_train(runner)
        self._restore_signals()

    def after_run(self, runner) -> None:
        super().after_run(runner)
        self._restore_signals()

    def _restore_signals(self) -> None:
        if self._signals is not None:
            self._signals.restore()
            self._signals = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['meta']['ffl_mm_run'] = dict(id=self.run_id)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._last_batch = data_batch  # what the weights are checked on
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        signum = self._signals.agreed() if self._signals else None
        if signum:
            self._stop_for_signal(runner, signum, batches_done=batch_idx + 1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        super().after_val_epoch(runner, metrics)
        signum = self._signals.agreed() if self._signals else None
        if signum:  # validation within training: the epoch is complete
            self._stop_for_signal(runner, signum, batches_done=None)

    def _stop_for_signal(self, runner, signum: int,
                         batches_done: Optional[int]) -> None:
        """Save where the run is (mid-epoch after ``batches_done`` batches,
        or at the end of an epoch), then end the process by ``signum``."""
        from mmengine.dist import barrier, get_rank
        name = signal_name(signum)
        by_epoch = hasattr(runner.train_loop, 'max_epochs')
        if batches_done is None:  # after an epoch and its validation
            meta = dict(epoch=runner.epoch, iter=runner.iter)
            filename = (f'epoch_{runner.epoch}.pth' if by_epoch else
                        f'iter_{runner.iter}.pth')
            where = f'after epoch {runner.epoch}' if by_epoch else \
                f'after iteration {runner.iter}'
        else:
            filename = (f'epoch_{runner.epoch + 1}_iter_{runner.iter + 1}'
                        '.pth' if by_epoch else f'iter_{runner.iter + 1}.pth')
            meta = dict(epoch=runner.epoch, iter=runner.iter + 1,
                        ffl_mm_resume=dict(
                            batches_done=batches_done, file=filename,
                            ranks=gather_rank_states(runner.model)))
            where = (f'in epoch {runner.epoch + 1} after batch '
                     f'{batches_done} of {len(runner.train_dataloader)}'
                     if by_epoch else f'after iteration {runner.iter + 1}')
        saved = self._own_last is not None and \
            osp.basename(self._own_last) == filename
        if not saved:
            try:
                self._write(runner, filename, meta)
                saved = True
            except NonFiniteWeightsError as error:
                print_log(f'{name}: {error}', logger='current',
                          level=logging.ERROR)
        print_log(
            f'{name} received: stopping {where}. ' +
            (f'Saved {self._own_last}; continue with --resume (or '
             'resume=True) in this work dir.' if saved else
             (f'Resume from {self._own_last}, the last checkpoint of this '
              'run, with --resume.' if self._own_last else
              'This run saved no checkpoint.')),
            logger='current', level=logging.WARNING)
        barrier()  # no rank exits (torchrun then stops the rest) mid-save
        received = self._signals is None or self._signals.received == signum
        self._restore_signals()
        if not received:
            print_log(f'rank {get_rank()} stops: another rank received '
                      f'{name}', logger='current')
        exit_by_signal(signum, received)

    def _diverged_predictions(self, runner) -> Optional[str]:
        """The non-finite fields the model predicts for the last training
        batch in evaluation mode, on any rank; None when all are finite (or
        there is no batch to check)."""
        from mmengine.dist import all_reduce
        found = None
        if self._last_batch is not None:
            model = runner.model
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    bad = first_non_finite_output(
                        model.val_step(self._last_batch))
            finally:
                model.train(was_training)
            found = ', '.join(bad[1]) if bad else None
        flag = torch.tensor([1. if found else 0.])
        all_reduce(flag, op='max')  # every rank stops, or none
        return (found or 'on another rank') if flag.item() else None

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with interrupts_kept():
            super()._save_best_checkpoint(runner, metrics)

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._write(runner, self.filename_tmpl.format(step), meta)
        self._prune(runner, step)
        if self._stop_file is not None and is_main_process() and \
                osp.isfile(self._stop_file):
            os.remove(self._stop_file)  # superseded by this save
        self._stop_file = None

    def _write(self, runner, filename: str, meta: dict) -> None:
        """Save ``filename`` (after the NaN and divergence checks) and
        point ``last_checkpoint`` at it."""
        bad = non_finite_tensors(runner.model)
        if bad:
            raise NonFiniteWeightsError(
                f'Not saving {filename}: {len(bad)} weight tensor(s) hold '
                f'NaN or inf after the last step ({", ".join(bad[:3])}'
                f'{", ..." if len(bad) > 3 else ""}); the run diverged. '
                + (f'The last good checkpoint of this run, {self._own_last}, '
                   'stays. ' if self._own_last else '') +
                f'Check the data, {RESTART_ADVICE}.')
        diverged = self._diverged_predictions(runner)
        if diverged:
            last = self._own_last
            raise NonFiniteWeightsError(
                f'Not saving {filename}: the weights diverged (finite, but '
                f'they predict NaN or inf {diverged} for the last training '
                'batch in evaluation mode). ' +
                (f'The last good checkpoint, {last}, stays the one to resume '
                 f'from; restart from it with a lower learning rate: '
                 f'--cfg-options load_from={last} optim_wrapper.optimizer.'
                 'lr=LR (--resume would restore the old learning rate).'
                 if last else 'No checkpoint was saved before: start again '
                 'with a lower learning rate.'))
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        with interrupts_kept():
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if is_main_process():
            atomic_write(
                str(self.last_ckpt).encode(),
                osp.join(runner.work_dir, 'last_checkpoint'))
        self._own_last = str(self.last_ckpt)

    def _prune(self, runner, step) -> None:
        """Remove kept checkpoints beyond ``max_keep_ckpts``, oldest first
        (the step just saved is never one of them)."""
        if self.max_keep_ckpts <= 0:
            return
        ids = list(self.keep_ckpt_ids)
        # _save_checkpoint and _save_best_checkpoint may both save a step
        if not ids or ids[-1] != step:
            ids.append(step)
        while len(ids) > self.max_keep_ckpts:
            old = ids.pop(0)
            if not is_main_process():
                continue
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)
        # MMEngine's deque has maxlen max_keep_ckpts
        self.keep_ckpt_ids = deque(ids, self.max_keep_ckpts)
        runner.message_hub.update_info('keep_ckpt_ids', ids)
