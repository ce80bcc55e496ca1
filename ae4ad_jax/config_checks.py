"""Checks of a config and of the data it names, run before any compute.

Each raises UserError naming the first bad key or the dataset's problem.
"""

import math

from ae4ad_jax import entropy, execution, input_pipeline, methods
from ae4ad_jax.errors import UserError
from ae4ad_jax.models import DOWNSAMPLE_FACTOR

COMPUTE_DTYPES = ("float32", "bfloat16")


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


def _one_of(config, key, choices):
    value = _get(config, key)
    _require(value in choices, f"Config key {key} must be one of {choices}, got {value!r}.")


def validate_config(config) -> None:
    """Raises UserError naming the first bad key; runs before any data or compute."""
    input_pipeline.check_dataset_name(config.dataset)
    for name in (config.method,) + tuple(config.methods):
        _require(name in methods.FAMILY,
                 f"Unknown method {name!r}: known methods are {', '.join(methods.FAMILY)}.")
    for key in ("latent_size", "image_size", "channels", "num_epochs", "batch_size",
                "eval_every_epochs", "checkpoint_every_epochs", "eval.batch_size",
                "model.base_width", "model.expansion", "model.hidden_width",
                "model.encoder_depth", "model.decoder_depth"):
        _positive_int(config, key)
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
    _check_method_settings(config)
    _check_rate(config)
    _require(isinstance(config.entropy_bootstrap, int) and config.entropy_bootstrap >= 0,
             "Config key entropy_bootstrap must be an integer >= 0 (resamples), got "
             f"{config.entropy_bootstrap!r}.")
    _one_of(config, "model.compute_dtype", COMPUTE_DTYPES)
    for key, choices in execution.CHOICES.items():
        _one_of(config, f"execution.{key}", choices)
    chunk = config.execution.member_chunk_size
    _require(isinstance(chunk, int) and chunk >= 0,
             f"Config key execution.member_chunk_size must be an integer >= 0, got {chunk!r}.")
    rate = config.eval.false_positive_rate
    _require(isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1,
             f"Config key eval.false_positive_rate must be in (0, 1), got {rate!r}.")
    fraction = config.val_fraction
    _require(isinstance(fraction, (int, float)) and 0 <= fraction < 1,
             f"Config key val_fraction must be in [0, 1), got {fraction!r}.")
    lr = config.learning_rate
    _require(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
             f"Config key learning_rate must be a positive finite number, got {lr!r}.")


def _number(config, key, low, high=math.inf):
    value = _get(config, key)
    _require(isinstance(value, (int, float)) and not isinstance(value, bool)
             and math.isfinite(value) and low <= value <= high,
             f"Config key {key} must be a number in [{low}, {high}], got {value!r}.")


def _check_method_settings(config) -> None:
    """The method's own settings; a method without a latent code takes no latent axes."""
    for key in ("memae.slots", "dae.noise_resolution", "dae.depth", "dae.width_log2",
                "ssim.window"):
        _positive_int(config, key)
    _require(config.ssim.window % 2 == 1 and config.ssim.window <= config.image_size,
             f"Config key ssim.window must be odd and at most image_size, got "
             f"{config.ssim.window}.")
    for key in ("vae.kl_weight", "memae.entropy_weight", "memae.shrink_threshold",
                "dae.noise_std", "ssim.sigma", "ganomaly.adversarial_weight",
                "ganomaly.reconstruction_weight", "ganomaly.encoding_weight"):
        _number(config, key, 0.0)
    _number(config, "ceae.erase_fraction", 0.0, 1.0)
    _number(config, "ceae.fill_value", -math.inf)
    unknown = [name for name in config.method_overrides if name not in methods.FAMILY]
    _require(not unknown, f"Config key method_overrides names unknown methods {unknown}.")
    divisor = 2 ** (config.dae.depth - 1)
    for name in (config.method,) + tuple(config.methods):
        method = methods.FAMILY[name]
        if name == "dae":
            _require(config.image_size % divisor == 0,
                     f"Config key image_size must be a multiple of {divisor} for the DAE's "
                     f"U-Net of depth {config.dae.depth}, got {config.image_size}.")
        if not method.has_latent:
            _require(not config.latent_sizes and not config.entropy_weights
                     and config.entropy_weight == 0,
                     f"Method {name} has no latent code: leave latent_sizes, entropy_weight "
                     "and entropy_weights unset (its ensembles are over seeds).")
        if name == "ae-perceptual":
            single = config.copy_and_resolve_references()
            single.method = name
            methods.create(single).frozen_variables()  # the weights file exists and fits


def _check_rate(config) -> None:
    """The learned rate's settings, and that the method's code can be quantised."""
    weights = tuple(config.rate_weights) + (config.rate_weight,)
    _require(all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                 and w >= 0 for w in weights),
             f"Config keys rate_weight/rate_weights must be finite numbers >= 0, got "
             f"{weights!r}.")
    _require(len(set(config.rate_weights)) == len(config.rate_weights),
             f"Config key rate_weights must hold distinct values, got {config.rate_weights!r}.")
    if not config.rate.enabled:
        _require(not config.rate_weights and config.rate_weight == 0,
                 "Config keys rate_weight/rate_weights need the learned rate: set "
                 "--config.rate.enabled=True.")
        return
    _number(config, "rate.step", 1e-6)
    _number(config, "rate.init_scale", 1e-6)
    _number(config, "rate.learning_rate", 1e-12)
    filters = tuple(config.rate.filters)
    _require(len(filters) > 0 and all(isinstance(f, int) and not isinstance(f, bool)
                                      and f >= 1 for f in filters),
             f"Config key rate.filters must be a tuple of positive integers, got {filters!r}.")
    for name in (config.method,) + tuple(config.methods):
        _require(name in methods.RATE_METHODS,
                 f"Method {name} has no plain latent code to quantise: rate.enabled works "
                 f"with {', '.join(methods.RATE_METHODS)}.")


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
