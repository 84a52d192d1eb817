# Copyright (c) ffl_mm contributors.
"""MMEngine's ``CheckpointHook`` that never deletes a checkpoint before the
new one is safely on disk."""
import contextlib
import logging
import os.path as osp
import signal
import threading
from collections import deque
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ffl_mm.registry import HOOKS
from ..atomic_backend import atomic_write, remove_stale_temporaries
from ..resume import latest_checkpoint_pointer
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

    SIGTERM (what SLURM and ``kill`` send before they kill) stops the run
    as Ctrl-C does, with a log line naming the signal, where the run was and
    the checkpoint to resume from: a save in progress removes its temporary
    file and the last checkpoint and its pointer stay as they were.
    """

    _last_batch = None  # the last training batch, checked before a save
    _previous_sigterm = None

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
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(
                signal.SIGTERM, lambda signum, frame: self._on_sigterm(runner))

    def after_run(self, runner) -> None:
        super().after_run(runner)
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _on_sigterm(self, runner) -> None:
        # once: a second SIGTERM gets the handler that was there before
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        last = latest_checkpoint_pointer(runner.work_dir)
        print_log(
            f'SIGTERM during epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1}: '
            'stopping as for Ctrl-C. '
            + (f'Resume from {last} with --resume (or resume=True).'
               if last else 'No checkpoint was saved yet.'),
            logger='current', level=logging.WARNING)
        raise KeyboardInterrupt('SIGTERM')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._last_batch = data_batch  # what the weights are checked on
        super().after_train_iter(runner, batch_idx, data_batch, outputs)

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
        filename = self.filename_tmpl.format(step)
        bad = non_finite_tensors(runner.model)
        if bad:
            raise NonFiniteWeightsError(
                f'Not saving {filename}: {len(bad)} weight tensor(s) hold '
                f'NaN or inf after the last step ({", ".join(bad[:3])}'
                f'{", ..." if len(bad) > 3 else ""}); the run diverged. '
                f'The last good checkpoint is still the one named in '
                f'{osp.join(runner.work_dir, "last_checkpoint")}. Check the '
                f'data, {RESTART_ADVICE}.')
        diverged = self._diverged_predictions(runner)
        if diverged:
            last = latest_checkpoint_pointer(runner.work_dir)
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
        self._prune(runner, step)

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
