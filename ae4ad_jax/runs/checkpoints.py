"""One Orbax CheckpointManager per workdir: save the whole train state, restore the latest,
or read only the parts that scoring needs.

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a run killed mid-save leaves no checkpoint that reads as whole.
Checkpoint steps are epoch numbers.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from ae4ad_jax.core.errors import UserError

MAX_TO_KEEP = 3


def _directory(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def create_manager(workdir: str) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=MAX_TO_KEEP, create=True)
    return ocp.CheckpointManager(_directory(workdir), options=options)


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


def _shape_differences(template, stored) -> list[str]:
    """Where two trees of arrays (or array metadata) differ in structure or shape."""
    def shapes(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}

    wanted, found = shapes(template), shapes(stored)
    problems = [f"{key} is not in the checkpoint" for key in wanted if key not in found]
    problems += [f"{key} is in the checkpoint but not in the model" for key in found
                 if key not in wanted]
    problems += [f"{key} has shape {found[key]} in the checkpoint, {wanted[key]} in the model"
                 for key in wanted if key in found and found[key] != wanted[key]]
    return problems


def restore_parts(workdir: str, template: dict):
    """(arrays, epoch) of the latest checkpoint: the entries that `template` names (trees of
    `jax.ShapeDtypeStruct`, e.g. params and batch statistics), read as numpy arrays after
    their shapes are checked against it. Nothing else is read (no optimiser state).
    (None, 0) when there is no checkpoint."""
    directory = _directory(workdir)
    if not os.path.isdir(directory):
        return None, 0
    manager = ocp.CheckpointManager(directory, item_handlers=ocp.PyTreeCheckpointHandler())
    try:
        epoch = manager.latest_step()
        if epoch is None:
            return None, 0
        stored = manager.item_metadata(epoch).tree
        problems = _shape_differences(template, {key: stored[key] for key in template
                                                 if key in stored})
        if problems:
            detail = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                if len(problems) > 3 else "")
            raise IncompatibleCheckpoint(
                f"The checkpoint of epoch {epoch} in {directory} does not fit this config "
                f"({detail}).", detail)
        restore_args = jax.tree_util.tree_map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), template)
        restored = manager.restore(epoch, args=ocp.args.PyTreeRestore(
            item=template, restore_args=restore_args, partial_restore=True))
    finally:
        manager.close()
    return restored, int(epoch)
