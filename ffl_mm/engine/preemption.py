# Copyright (c) ffl_mm contributors.
"""The signals a cluster sends before it kills a job, caught so that the
run can save first (``SafeCheckpointHook``), and a process that then ends
by the signal it received."""
import logging
import os
import signal
import threading
from typing import Optional

import torch

#: SIGTERM: ``scancel``, SLURM pre-emption and time limit, ``kill``,
#: torchrun stopping its workers, spot instances. SIGUSR1: what
#: ``sbatch --signal=B:USR1@120`` (or ``srun --signal=USR1@120``) sends
#: ahead of the end of a job, as PyTorch Lightning's SLURM requeue uses.
STOP_SIGNALS = ('SIGTERM', 'SIGUSR1')


class StopSignals:
    """Record, rather than act on, the stop signals while a run trains.

    The handler only notes the first signal (a log call or an exception
    inside a signal handler can interrupt a write half-way); the run acts
    on it at its next safe point, after the current iteration. Further
    signals are noted too and otherwise ignored until :meth:`restore`, so
    that a second SIGTERM (torchrun forwards the one SLURM sent it) does not
    cut the save short.
    """

    #: Instances whose handlers are installed (restore_stop_signals()).
    installed = []

    def __init__(self):
        self.received: Optional[int] = None
        self._previous = {}

    def install(self) -> None:
        """Catch :data:`STOP_SIGNALS` (from the main thread only: Python
        allows nothing else)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None and signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._note)
        if self._previous:
            StopSignals.installed.append(self)

    def _note(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def restore(self) -> None:
        """Put back the handlers found by :meth:`install`."""
        for signum, handler in reversed(list(self._previous.items())):
            signal.signal(signum, handler)
        self._previous = {}
        if self in StopSignals.installed:
            StopSignals.installed.remove(self)

    def agreed(self) -> Optional[int]:
        """The signal to stop for, the same on every rank: the highest one
        any rank received (a collective: call it on every rank at the same
        point), None when none did."""
        from mmengine.dist import all_reduce, get_world_size
        if get_world_size() == 1:
            return self.received
        flag = torch.tensor([float(self.received or 0)])
        all_reduce(flag, op='max')
        return int(flag.item()) or None


def restore_stop_signals() -> None:
    """Put back the handlers of every :class:`StopSignals` still installed
    (a run that failed before its hooks could: ``SafeRunner`` calls this
    when training ends however it ends)."""
    while StopSignals.installed:
        StopSignals.installed[-1].restore()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f'signal {signum}'


def exit_by_signal(signum: int, received: bool) -> None:
    """End the process as the signal would have ended it, so that torchrun,
    SLURM and the shell report it truly (``Signal 15 (SIGTERM)``, exit status
    143): the work-dir locks are released, the log handlers flushed and
    closed (``logging.shutdown``, which Python's own exit would run) and the
    default action of ``signum`` taken. A rank that stops only because
    another rank received the signal exits with status ``128 + signum``
    (``SystemExit``) instead.
    """
    from .work_dir import unlock_work_dirs
    unlock_work_dirs()
    if received:
        logging.shutdown()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # delivered before kill() returns
    raise SystemExit(128 + signum)
