"""Checks of a config and of the data it names, run before any compute.

Each raises UserError naming the first bad key or the dataset's problem. Declared
groups (the architecture, the learned rate, each method's own settings, the caps on
decoding input files) are checked by their declarations (`core.settings`); the run's
top-level keys here.
"""

import math
import os

from ae4ad_jax.core import settings
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import pipeline
from ae4ad_jax.data.decoding import Limits
from ae4ad_jax.estimators import entropy
from ae4ad_jax.methods import registry
from ae4ad_jax.nets.layers import DOWNSAMPLE_FACTOR
from ae4ad_jax.parallel import execution
from ae4ad_jax.runs import workdir as workdir_lib

MAX_IMAGE_SIZE = 4096  # pixels per side: far beyond the benchmark's 64 and 128
MAX_BATCH = 65536  # images per training or scoring batch


def _require(condition, message):
    if not condition:
        raise UserError(message)


def _get(config, key):
    for part in key.split("."):
        config = config[part]
    return config


def _positive_int(config, key):
    value = _get(config, key)
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
             f"Config key {key} must be a positive integer, got {value!r}.")


def _number_in(config, key, low, high, kind):
    value = config[key]
    _require(isinstance(value, (int, float)) and not isinstance(value, bool)
             and low <= value < high, f"Config key {key} must be in {kind}, got {value!r}.")


def read_saved_config(workdir):
    """A workdir's config.json, resolved and checked as a run's config is: a missing key
    or a value out of range is a UserError naming the file and the key."""
    path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
    config = workdir_lib.load_saved_config(workdir)  # its own errors name the file
    try:
        config = registry.resolve_config(config)
        validate_config(config)
    except (AttributeError, KeyError) as error:
        key = str(error.args[0] if error.args else error).strip("'\"")
        raise UserError(f"{path} lacks the key {key!r}: it was not written by this version "
                        "of ae4ad-jax, or was edited.") from None
    except (TypeError, ValueError) as error:
        raise UserError(f"{path} holds a malformed value ({error}).") from None
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    return config


def validate_config(config) -> None:
    """Raises UserError naming the first bad key; runs before any data or compute."""
    pipeline.check_dataset_name(config.dataset)
    registry.check_config(config)
    settings.check(Limits, config.get("input_limits", None) or {}, "input_limits")
    _check_channels(config)
    for key in ("latent_size", "image_size", "num_epochs", "batch_size",
                "eval_every_epochs", "checkpoint_every_epochs", "eval.batch_size"):
        _positive_int(config, key)
    for key, most in (("image_size", MAX_IMAGE_SIZE), ("batch_size", MAX_BATCH),
                      ("eval.batch_size", MAX_BATCH)):
        _require(_get(config, key) <= most,
                 f"Config key {key} must be at most {most}, got {_get(config, key)}.")
    _require(config.image_size % DOWNSAMPLE_FACTOR == 0,
             f"Config key image_size must be a multiple of {DOWNSAMPLE_FACTOR} (the AE halves "
             f"it four times), got {config.image_size}.")
    for key in ("latent_sizes", "seeds"):
        values = tuple(config[key])
        _require(all(isinstance(v, int) and not isinstance(v, bool) for v in values)
                 and len(set(values)) == len(values),
                 f"Config key {key} must be a tuple of distinct integers, got {values!r}.")
    _require(all(d >= 1 for d in config.latent_sizes),
             f"Config key latent_sizes must hold positive integers, got {config.latent_sizes}.")
    weights = tuple(config.entropy_weights) + (config.entropy_weight,)
    _require(all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights),
             f"Config keys entropy_weight/entropy_weights must be finite numbers, got "
             f"{weights!r}.")
    unknown = [m for m in config.entropy_estimators if m not in entropy.ESTIMATORS]
    _require(not unknown, f"Config key entropy_estimators holds unknown estimators {unknown}: "
             f"known estimators are {', '.join(entropy.ESTIMATORS)}.")
    _check_rate_weights(config)
    _require(isinstance(config.entropy_bootstrap, int) and config.entropy_bootstrap >= 0,
             "Config key entropy_bootstrap must be an integer >= 0 (resamples), got "
             f"{config.entropy_bootstrap!r}.")
    for key, choices in execution.CHOICES.items():
        value = config.execution[key]
        _require(value in choices,
                 f"Config key execution.{key} must be one of {choices}, got {value!r}.")
    for key in ("member_chunk_size", "steps_per_program", "memory_limit_bytes"):
        value = config.execution.get(key, 0)  # the last two are newer than some workdirs
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                 f"Config key execution.{key} must be an integer >= 0, got {value!r}.")
    keep = config.checkpoints_to_keep
    _require(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 2,
             f"Config key checkpoints_to_keep must be an integer >= 2 (a fallback when the "
             f"newest cannot be read), got {keep!r}.")
    rate = config.eval.false_positive_rate
    _require(isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1,
             f"Config key eval.false_positive_rate must be in (0, 1), got {rate!r}.")
    k = config.eval.code_knn_k
    _require(isinstance(k, int) and not isinstance(k, bool) and k >= 1,
             f"Config key eval.code_knn_k must be an integer >= 1, got {k!r}.")
    _number_in(config, "val_fraction", 0, 1, "[0, 1)")
    lr = config.learning_rate
    _require(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
             f"Config key learning_rate must be a positive finite number, got {lr!r}.")


def _check_channels(config) -> None:
    """0 (the dataset's), 1 or 3, and not other than the dataset's own count."""
    value, fixed = config.channels, pipeline.dataset_channels(config.dataset)
    _require(value in (0, 1, 3) and not isinstance(value, bool),
             f"Config key channels must be 0 (the dataset's), 1 (gray) or 3 (RGB), got "
             f"{value!r}.")
    _require(not value or fixed is None or value == fixed,
             f"Dataset {config.dataset} has {fixed} channel(s) but config key channels is "
             f"{value}: leave channels at 0 to read the dataset as it is.")


def _check_rate_weights(config) -> None:
    """The rate weights (an ensemble axis) need the learned rate."""
    weights = tuple(config.rate_weights) + (config.rate_weight,)
    _require(all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                 and w >= 0 for w in weights),
             f"Config keys rate_weight/rate_weights must be finite numbers >= 0, got "
             f"{weights!r}.")
    _require(len(set(config.rate_weights)) == len(config.rate_weights),
             f"Config key rate_weights must hold distinct values, got {config.rate_weights!r}.")
    _require(config.rate.enabled or (not config.rate_weights and config.rate_weight == 0),
             "Config keys rate_weight/rate_weights need the learned rate: set "
             "--config.rate.enabled=True.")


def check_data(data, config) -> None:
    """The loaded dataset fits the config: channels, a training set, both test labels (if it
    has a test split)."""
    _require(data.channels == config.channels,
             f"Dataset {config.dataset} has {data.channels} channel(s) but config key channels "
             f"is {config.channels}.")
    _require(len(data.train_images) > 0, f"Dataset {config.dataset} has no training images.")
    labels = set(data.test_labels.tolist())
    _require(labels == {0, 1} or not len(data.test_images),
             f"The test split of {config.dataset} needs normal (0) and abnormal (1) images; "
             f"it has labels {sorted(labels)}.")
