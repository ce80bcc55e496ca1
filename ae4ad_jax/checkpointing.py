"""One Orbax CheckpointManager per workdir: save the whole train state, restore the latest.

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a run killed mid-save leaves no checkpoint that reads as whole.
Checkpoint steps are epoch numbers.
"""

import os

import orbax.checkpoint as ocp

from ae4ad_jax.errors import UserError

MAX_TO_KEEP = 3


def create_manager(workdir: str) -> ocp.CheckpointManager:
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(max_to_keep=MAX_TO_KEEP, create=True)
    return ocp.CheckpointManager(directory, options=options)


def _payload(state) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
            "batch_stats": state.batch_stats, "rng": state.rng}


def save(manager, epoch: int, state) -> None:
    manager.save(epoch, args=ocp.args.StandardSave(_payload(state)))


class IncompatibleCheckpoint(UserError):
    """A checkpoint whose arrays do not fit the model of the config; `detail` says how."""

    def __init__(self, message, detail):
        super().__init__(message)
        self.detail = detail


def restore_or_keep(manager, state, workdir):
    """(restored state, its epoch) from the latest checkpoint, or (state, 0) if there is none."""
    epoch = manager.latest_step()
    if epoch is None:
        return state, 0
    try:
        restored = manager.restore(epoch, args=ocp.args.StandardRestore(_payload(state)))
    except (ValueError, KeyError, TypeError) as error:
        detail = str(error).splitlines()[0].split(". Truncating")[0]
        raise IncompatibleCheckpoint(
            f"The checkpoint of epoch {epoch} in {manager.directory} does not fit this config "
            f"({detail}). Use a fresh --workdir.", detail) from None
    return state.replace(**restored), int(epoch)
