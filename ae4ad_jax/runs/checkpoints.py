"""Checkpoints of a run: the whole train state at epoch ends, a mid-epoch one at a stop,
and the parts that scoring needs.

- `WORKDIR/checkpoints/<epoch>`: the train state after an epoch (one Orbax
  CheckpointManager; the newest `keep` are kept, at least two).
- `WORKDIR/checkpoints/stopped/<step>`: the state at an optimiser step inside an
  epoch, saved when a run is stopped (`training/preemption.py`), with the metrics
  of the epoch's steps so far; it is removed once a later epoch has been saved.

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a run killed mid-save leaves no checkpoint that reads as whole. A
checkpoint that cannot be read is moved aside to `WORKDIR/checkpoints-unreadable/`
(never deleted) and the next older one is used; one whose arrays do not fit the
config is refused (`IncompatibleCheckpoint`). A save that fails (a full disk, a
permission) stops the run with a message; the checkpoints before it stay whole.
"""

import os
import re
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from ae4ad_jax.core import hosts
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.logs import log

DEFAULT_KEEP = 3
STOPPED = "stopped"
UNREADABLE = "checkpoints-unreadable"


def _directory(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def _stopped_directory(workdir: str) -> str:
    return os.path.join(_directory(workdir), STOPPED)


def create_manager(workdir: str, keep: int = DEFAULT_KEEP) -> ocp.CheckpointManager:
    """The manager of the workdir's epoch checkpoints, keeping the newest `keep` (>= 2)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max(2, keep), create=True)
    return ocp.CheckpointManager(_directory(workdir), options=options)


def _stopped_manager(workdir: str) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    return ocp.CheckpointManager(_stopped_directory(workdir), options=options)


def _payload(state) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
            "batch_stats": state.batch_stats, "rng": state.rng}


class SaveFailed(UserError):
    """A checkpoint could not be written (a full disk, a permission)."""


def _reason(error) -> str:
    """The operating system's words in a (TensorStore) write error, else its first line."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    found = re.search(r'Failed writing: "([^"]+)": ([^\[]+)', text)
    return f"{found[2].strip()}: {found[1]}" if found else text[:300]


def _save_failed(directory, step, error, previous):
    kept = (f"the checkpoint of {previous} is intact" if previous
            else "no earlier checkpoint exists")
    return SaveFailed(
        f"Saving the checkpoint of {step} to {directory} failed ({_reason(error)}); {kept}. Free "
        "disk space or fix the folder's permissions, then run the same command again to "
        "resume.")


def save(manager, epoch: int, state) -> None:
    """Starts writing the state after `epoch` (in the background on accelerators)."""
    previous = manager.latest_step()
    manager.ae4ad_saving = epoch  # named if the write fails in the background
    try:
        manager.save(epoch, args=ocp.args.StandardSave(_payload(state)))
    except OSError as error:
        raise _save_failed(manager.directory, f"epoch {epoch}",
                           error, previous and f"epoch {previous}") from None


def wait(manager) -> None:
    """Waits for a save in flight; its failure becomes a `SaveFailed`."""
    try:
        manager.wait_until_finished()
    except (OSError, ValueError, RuntimeError) as error:
        saving = getattr(manager, "ae4ad_saving", None)
        steps = [step for step in manager.all_steps() if step != saving]
        raise _save_failed(manager.directory, f"epoch {saving}", error,
                           steps and f"epoch {max(steps)}") from None


def save_stopped(workdir: str, state, step: int, epoch_metrics: dict) -> str:
    """Writes the state at optimiser `step` (inside an epoch) with the epoch's metrics so
    far (numpy [M, steps]); returns the folder. Waits until it is complete."""
    manager = _stopped_manager(workdir)
    if manager.latest_step() == step:  # stopped again before a step: already saved
        manager.close()
        return os.path.join(_stopped_directory(workdir), str(step))
    try:
        manager.save(step, args=ocp.args.StandardSave(
            {**_payload(state), "epoch_metrics": epoch_metrics}), force=True)
        manager.wait_until_finished()
    except (OSError, ValueError, RuntimeError) as error:
        raise _save_failed(manager.directory, f"step {step}", error, None) from None
    finally:
        manager.close()
    return os.path.join(_stopped_directory(workdir), str(step))


def remove_stopped(workdir: str) -> None:
    """Drops the mid-epoch checkpoint once an epoch checkpoint after it is complete."""
    if os.path.isdir(_stopped_directory(workdir)):
        shutil.rmtree(_stopped_directory(workdir), ignore_errors=True)


class IncompatibleCheckpoint(UserError):
    """A checkpoint whose arrays do not fit the model of the config; `detail` says how."""

    def __init__(self, message, detail):
        super().__init__(message)
        self.detail = detail


def _shape_differences(template, stored) -> list[str]:
    """Where two trees of arrays (or array metadata) differ in structure or shape."""
    def name(key):  # a tuple's field and a stored dict's key read alike
        if hasattr(key, "idx"):
            return f"[{key.idx}]"
        return f"['{getattr(key, 'key', getattr(key, 'name', key))}']"

    def shapes(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {"".join(map(name, path)): tuple(leaf.shape) for path, leaf in leaves}

    wanted, found = shapes(template), shapes(stored)
    problems = [f"{key} is not in the checkpoint" for key in wanted if key not in found]
    problems += [f"{key} is in the checkpoint but not in the model" for key in found
                 if key not in wanted]
    problems += [f"{key} has shape {found[key]} in the checkpoint, {wanted[key]} in the model"
                 for key in wanted if key in found and found[key] != wanted[key]]
    return problems


def _check_fits(template, stored, what, directory):
    problems = _shape_differences(template, {key: stored[key] for key in template
                                             if key in stored})
    if problems:
        detail = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                            if len(problems) > 3 else "")
        raise IncompatibleCheckpoint(
            f"The checkpoint of {what} in {directory} does not fit this config ({detail}). "
            "Use a fresh --workdir.", detail)


def _stored_tree(directory: str, step: int):
    """The array metadata of a checkpoint, read without its arrays."""
    manager = ocp.CheckpointManager(directory, item_handlers=ocp.PyTreeCheckpointHandler())
    try:
        return manager.item_metadata(step).tree
    finally:
        manager.close()


def _move_aside(workdir: str, directory: str, step: int, what: str, error) -> None:
    """Moves an unreadable checkpoint out of Orbax's sight, keeping it for inspection."""
    aside = os.path.join(os.path.abspath(workdir), UNREADABLE,
                         f"{os.path.basename(directory)}-{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    reason = re.sub(r"\s*\[[a-z_.]+='.*$", "", reason)  # TensorStore's spec and codes
    if len(reason) > 240:  # the end names the file and what was wrong with it
        reason = "..." + reason[-240:]
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        os.replace(os.path.join(directory, str(step)), aside)
    log(f"The checkpoint of {what} in {directory} cannot be read ({reason}); it was moved to "
        f"{aside}, and the run goes on from the newest readable checkpoint.")


def _restore(directory, step, template_of, what):
    """The checkpoint's arrays in the shapes of `template_of(its array metadata)` (a tree
    of arrays or `jax.ShapeDtypeStruct`), or the error that made it unreadable. A
    checkpoint that does not fit the template raises IncompatibleCheckpoint."""
    try:
        stored = _stored_tree(directory, step)
    except Exception as error:  # noqa: BLE001 - any failure to read is an unreadable file
        return None, error
    template = template_of(stored)
    _check_fits(template, stored, what, directory)
    manager = ocp.CheckpointManager(directory)
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(template)), None
    except Exception as error:  # noqa: BLE001
        return None, error
    finally:
        manager.close()


def restore_or_keep(manager, state, workdir):
    """(restored state, its epoch) from the newest readable epoch checkpoint, or (state, 0)
    if there is none. Unreadable checkpoints are moved aside on the way."""
    payload = _payload(state)
    directory = str(manager.directory)
    while (epoch := manager.latest_step()) is not None:
        restored, error = _restore(directory, epoch, lambda _: payload, f"epoch {epoch}")
        if error is None:
            return state.replace(**restored), int(epoch)
        _move_aside(workdir, directory, epoch, f"epoch {epoch}", error)
        hosts.barrier("unreadable checkpoint moved aside")
        manager.reload()
    return state, 0


def restore_stopped(workdir: str, state, after_step: int):
    """(state, step, epoch metrics) from a mid-epoch checkpoint of a step after
    `after_step`, or None. An unreadable one is moved aside."""
    directory = _stopped_directory(workdir)
    if not os.path.isdir(directory):
        return None
    manager = _stopped_manager(workdir)
    step = manager.latest_step()
    manager.close()
    if step is None or step <= after_step:
        return None
    what = f"step {step}"

    def template_of(stored):  # the epoch's metrics so far, in their stored shapes
        return {**_payload(state), "epoch_metrics": {
            key: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
            for key, leaf in stored.get("epoch_metrics", {}).items()}}

    restored, error = _restore(directory, step, template_of, what)
    if error is not None:
        _move_aside(workdir, directory, step, what, error)
        return None
    metrics = {key: np.asarray(value) for key, value in restored.pop("epoch_metrics").items()}
    return state.replace(**restored), int(step), metrics


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
        _check_fits(template, manager.item_metadata(epoch).tree, f"epoch {epoch}", directory)
        restore_args = jax.tree_util.tree_map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), template)
        restored = manager.restore(epoch, args=ocp.args.PyTreeRestore(
            item=template, restore_args=restore_args, partial_restore=True))
    finally:
        manager.close()
    return restored, int(epoch)
