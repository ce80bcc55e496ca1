"""Stopping a run cleanly when the cluster asks: SIGTERM or SIGINT, a step boundary that
every process agrees on, a checkpoint there, and an exit status that means "requeue me".

On one process the signal handlers record the request and the training loop stops
before its next program (`step.run_epoch` asks `Stop.requested` at every program
boundary). On many processes (jax.distributed) the processes must stop at the same
boundary: JAX's preemption sync manager, which listens for SIGTERM on every
process, agrees on the first boundary that all of them have not yet passed
(`multihost_utils.reached_preemption_sync_point`); SIGINT is passed on to it as
SIGTERM. The loop then saves the state, mid-epoch if need be, with the position in
the epoch's data order (the optimiser step: each member's data order is a function of
its key and the epoch, its per-step keys of its key and the step) and exits with
REQUEUE_STATUS. A second signal while the checkpoint is written is reported and
ignored; Orbax renames a checkpoint only once it is whole, so even SIGKILL then
leaves the previous checkpoints readable.
"""

import signal
import threading
import time

from ae4ad_jax.core.errors import REQUEUE_STATUS
from ae4ad_jax.core.logs import log

__all__ = ["REQUEUE_STATUS", "Stop", "Stopped"]
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):  # noqa: N818 - a request, not an error
    """The run stopped at a signal after saving its state; resuming continues from there."""


def _sync_manager():
    """JAX's preemption sync manager when jax.distributed runs with it, else None."""
    from jax._src import distributed

    if distributed.global_state.client is None:
        return None
    return distributed.global_state.preemption_sync_manager


class Stop:
    """Signal handlers for a run, installed on entering the `with` block and put back on
    leaving it. `requested()` answers at each program boundary, the same sequence
    of calls on every process."""

    def __init__(self):
        self.signal_name, self.received_at, self.saving = None, None, False
        self.since = "the signal"  # what `received_at` marks
        self._boundaries, self._previous = 0, {}
        self._synced = _sync_manager() is not None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: nothing to install
        for signum in SIGNALS:
            if self._synced and signum == signal.SIGTERM:
                continue  # JAX's preemption notifier listens for it
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        del frame
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            state = "the checkpoint is being written" if self.saving else "already stopping"
            log(f"{name} received again: {state}; it completes before the run exits.")
            return
        self.signal_name, self.received_at = name, time.time()
        log(f"{name} received: the run stops at its next step boundary, saves a checkpoint "
            f"and exits with status {REQUEUE_STATUS} (resume: the same command).")
        if self._synced:  # the sync manager hears SIGTERM only
            signal.raise_signal(signal.SIGTERM)

    def requested(self) -> bool:
        """Whether to stop at this boundary. On many processes all of them agree: each
        call is one boundary of the sequence that every process walks through."""
        self._boundaries += 1
        if not self._synced:
            return self.signal_name is not None
        from jax.experimental import multihost_utils

        if multihost_utils.reached_preemption_sync_point(self._boundaries):
            if self.signal_name is None:
                self.signal_name = "SIGTERM (on one of the processes)"
                self.received_at, self.since = time.time(), "all processes agreed to stop"
            return True
        return False

    def seconds_since_signal(self) -> float:
        return time.time() - self.received_at if self.received_at else 0.0
