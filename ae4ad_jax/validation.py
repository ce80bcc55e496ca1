"""Checks of user input that run before any compute: config values, workdir, data."""

import json
import math
import os
import tempfile

from ae4ad_jax import ensemble, entropy, input_pipeline
from ae4ad_jax.errors import UserError
from ae4ad_jax.methods import METHODS

CONFIG_FILE = "config.json"
COMPUTE_DTYPES = ("float32", "bfloat16")
# Keys that may change between a run and its resumption; any other change makes
# the workdir's checkpoints belong to a different experiment.
RESUMABLE_KEYS = ("num_epochs", "eval_every_epochs", "checkpoint_every_epochs", "eval.",
                  "entropy_methods",
                  "data_dir", "tfds_dir", "member_lowering", "epoch_loop", "member_chunk_size",
                  "model.phase_convs", "model.compute_dtype")


def _require(condition, message):
    if not condition:
        raise UserError(message)


def _positive_int(config, key):
    value = config
    for part in key.split("."):
        value = value[part]
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
             f"Config key {key} must be a positive integer, got {value!r}.")


def validate_config(config) -> None:
    """Raises UserError naming the first bad key; runs before any data or compute."""
    input_pipeline.check_dataset_name(config.dataset)
    _require(config.method in METHODS,
             f"Unknown method {config.method!r}: known methods are {', '.join(METHODS)}.")
    for key in ("latent_size", "image_size", "channels", "num_epochs", "batch_size",
                "eval_every_epochs", "checkpoint_every_epochs", "eval.batch_size",
                "model.base_width", "model.expansion", "model.hidden_width",
                "model.encoder_depth", "model.decoder_depth"):
        _positive_int(config, key)
    _require(config.image_size % 16 == 0,
             f"Config key image_size must be a multiple of 16 (the AE halves it four times), "
             f"got {config.image_size}.")
    for key in ("latent_sizes", "seeds"):
        values = tuple(config[key])
        _require(all(isinstance(v, int) and not isinstance(v, bool) for v in values)
                 and len(set(values)) == len(values),
                 f"Config key {key} must be a tuple of distinct integers, got {values!r}.")
    weights = tuple(config.entropy_weights) + (config.entropy_weight,)
    _require(all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights),
             f"Config keys entropy_weight/entropy_weights must be finite numbers, got "
             f"{weights!r}.")
    _require(all(d >= 1 for d in config.latent_sizes),
             f"Config key latent_sizes must hold positive integers, got {config.latent_sizes}.")
    _require(config.model.compute_dtype in COMPUTE_DTYPES,
             f"Config key model.compute_dtype must be one of {COMPUTE_DTYPES}, "
             f"got {config.model.compute_dtype!r}.")
    _require(config.member_lowering in ensemble.LOWERINGS,
             f"Config key member_lowering must be one of {ensemble.LOWERINGS}, "
             f"got {config.member_lowering!r}.")
    _require(config.epoch_loop in ensemble.EPOCH_LOOPS,
             f"Config key epoch_loop must be one of {ensemble.EPOCH_LOOPS}, "
             f"got {config.epoch_loop!r}.")
    _require(isinstance(config.member_chunk_size, int) and config.member_chunk_size >= 0,
             f"Config key member_chunk_size must be an integer >= 0, "
             f"got {config.member_chunk_size!r}.")
    unknown = [m for m in config.entropy_methods if m not in entropy.METHODS]
    _require(not unknown, f"Config key entropy_methods holds unknown methods {unknown}: "
             f"known methods are {', '.join(entropy.METHODS)}.")
    fraction = config.val_fraction
    _require(isinstance(fraction, (int, float)) and 0 <= fraction < 1,
             f"Config key val_fraction must be in [0, 1), got {fraction!r}.")
    lr = config.learning_rate
    _require(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
             f"Config key learning_rate must be a positive finite number, got {lr!r}.")


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _incompatible_keys(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ. A key that only one side has (a config written by
    another version) counts only if its value there is set (not 0, empty or false)."""
    saved, current = _flatten(saved), _flatten(current)
    keys = sorted(set(saved) | set(current))
    changed = []
    for key in keys:
        if key.startswith(RESUMABLE_KEYS):
            continue
        if key not in saved or key not in current:
            if (saved.get(key) or current.get(key)) in (None, 0, 0.0, False, "", [], ()):
                continue
        if saved.get(key) != current.get(key):
            changed.append(key)
    return changed


def prepare_workdir(workdir: str, config, *, must_exist=False) -> None:
    """Creates the workdir, checks it is writable and that it holds no other experiment."""
    _require(bool(workdir), "No --workdir given: name a folder for checkpoints and metrics.")
    if must_exist:
        _require(os.path.isdir(workdir), f"Workdir {workdir} does not exist.")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise UserError(f"Workdir {workdir} cannot be created or written: {error}.") from None
    path = os.path.join(workdir, CONFIG_FILE)
    current = json.loads(config.to_json())
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as error:
            raise UserError(f"{path} is unreadable ({error}); use a fresh --workdir.") from None
        changed = _incompatible_keys(saved, current)
        if changed:
            details = ", ".join(f"{k}: {_flatten(saved).get(k)!r} -> {_flatten(current).get(k)!r}"
                                for k in changed)
            raise UserError(
                f"Workdir {workdir} holds a run of a different config ({details}); its "
                "checkpoints cannot be resumed with this one. Use a fresh --workdir, or the "
                "saved config.")
    with open(path + ".tmp", "w") as f:
        json.dump(current, f, indent=2)
    os.replace(path + ".tmp", path)


def load_saved_config(workdir: str):
    """The resolved config a workdir was run with (its config.json) as a ConfigDict."""
    import ml_collections

    path = os.path.join(workdir, CONFIG_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read the config of workdir {workdir} ({path}): {error}.") \
            from None
    for key in ("latent_sizes", "seeds", "entropy_methods", "entropy_weights"):
        saved[key] = tuple(saved.get(key, ()))
    saved.setdefault("model", {}).setdefault("compute_dtype", "float32")  # older workdirs
    return ml_collections.ConfigDict(saved)


def check_data(data, config) -> None:
    _require(data.channels == config.channels,
             f"Dataset {config.dataset} has {data.channels} channel(s) but config key channels "
             f"is {config.channels}.")
    _require(len(data.train_images) > 0, f"Dataset {config.dataset} has no training images.")
    labels = set(data.test_labels.tolist())
    _require(labels == {0, 1},
             f"The test split of {config.dataset} needs normal (0) and abnormal (1) images; "
             f"it has labels {sorted(labels)}.")
