"""A run's workdir and its `config.json`: the resolved config and the workdir format.

`config.json` holds `workdir_format` (the version of the files this package writes
into a workdir) and the config. A workdir of another format is refused with one
message; a workdir holding another experiment is refused, naming the keys that
differ, so checkpoints are never resumed under a different config.
"""

import json
import os
import tempfile

import ml_collections

from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError

WORKDIR_FORMAT = 1
FORMAT_KEY = "workdir_format"
CONFIG_FILE = "config.json"
# Keys that may change between a run and its resumption: the schedule, what is
# evaluated, where data lives and what its files may decode to, and how the program
# is compiled and computed. Any other change makes the workdir's checkpoints belong to
# a different experiment.
RESUMABLE_KEYS = ("num_epochs", "eval_every_epochs", "checkpoint_every_epochs",
                  "checkpoints_to_keep", "compilation_cache", "eval.",
                  "entropy_estimators", "entropy_bootstrap", "data_dir", "tfds_dir",
                  "input_limits.", "execution.", "model.compute_dtype", "parallelism",
                  "mesh_shape", "distributed.")


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changed_keys(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ, apart from RESUMABLE_KEYS."""
    saved, current = _flatten(saved), _flatten(current)
    return [key for key in sorted(set(saved) | set(current))
            if not key.startswith(RESUMABLE_KEYS) and saved.get(key) != current.get(key)]


def _read(workdir: str) -> dict:
    """The config saved in a workdir, its format checked."""
    path = os.path.join(workdir, CONFIG_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read the config of workdir {workdir} ({path}): {error}.") \
            from None
    found = saved.pop(FORMAT_KEY, None) if isinstance(saved, dict) else None
    if found != WORKDIR_FORMAT:
        what = (f"workdir format {found}" if found is not None
                else f"no {FORMAT_KEY} in its {CONFIG_FILE}")
        raise UserError(f"Workdir {workdir} was written by another version of ae4ad-jax "
                        f"({what}); this version reads workdir format {WORKDIR_FORMAT}. Use "
                        "the version that wrote it, or train again in a fresh --workdir.")
    return saved


def prepare_workdir(workdir: str, config, *, must_exist=False) -> None:
    """Creates the workdir, checks it is writable and holds no other experiment, and
    writes config.json."""
    if not workdir:
        raise UserError("No --workdir given: name a folder for checkpoints and metrics.")
    if must_exist and not os.path.isdir(workdir):
        raise UserError(f"Workdir {workdir} does not exist.")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise UserError(f"Workdir {workdir} cannot be created or written: {error}.") from None
    current = json.loads(config.to_json())
    if os.path.exists(os.path.join(workdir, CONFIG_FILE)):
        saved = _read(workdir)
        changed = _changed_keys(saved, current)
        if changed:
            old, new = _flatten(saved), _flatten(current)
            details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise UserError(
                f"Workdir {workdir} holds a run of a different config ({details}); its "
                "checkpoints cannot be resumed with this one. Use a fresh --workdir, or the "
                "saved config.")
    files.write_json(os.path.join(workdir, CONFIG_FILE), {FORMAT_KEY: WORKDIR_FORMAT,
                                                          **current})


def _tuples(value):
    """JSON's lists back to the config's tuples."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a workdir was run with (its config.json)."""
    return ml_collections.ConfigDict(_tuples(_read(workdir)))


def is_comparison(workdir) -> bool:
    """Whether a workdir holds a method comparison (its config names `methods`)."""
    if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
        return False
    return bool(load_saved_config(workdir).methods)
