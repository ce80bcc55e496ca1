"""Checks of a config and of the data it names, run before any compute.

Each raises UserError naming the first bad key or the dataset's problem. Every key's
own rule is a declaration (`core.settings`): the run's top-level keys (`Run`) and
`eval` (`Eval`) here, `execution` in parallel/execution.py, the architecture and the
learned rate in methods/registry.py, each method's own group in its module, the caps
on decoding input files in data/decoding.py. The few rules that tie keys together
follow the declarations here.
"""

import dataclasses
import os

from ae4ad_jax.core import settings
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import setting
from ae4ad_jax.data import pipeline
from ae4ad_jax.data.decoding import Limits
from ae4ad_jax.estimators import entropy
from ae4ad_jax.methods import registry
from ae4ad_jax.nets.layers import DOWNSAMPLE_FACTOR
from ae4ad_jax.parallel import execution
from ae4ad_jax.runs import workdir as workdir_lib

MAX_IMAGE_SIZE = 4096  # pixels per side: far beyond the benchmark's 64 and 128
MAX_BATCH = 65536  # images per training or scoring batch


@dataclasses.dataclass(frozen=True)
class Run:
    """The run's declared top-level keys (configs/default.py sets them from here)."""
    latent_size: int = setting(16, "the code's size d", low=1)
    # An ensemble trained together: every (latent size, seed, entropy weight, rate weight)
    # is a member; an empty axis is its single value (latent_size, seed, ...).
    latent_sizes: tuple = setting((), "an ensemble axis of d", item=int, low=1, distinct=True)
    seeds: tuple = setting((), "an ensemble axis of seeds", item=int, distinct=True)
    image_size: int = setting(64, "pixels per side", low=1, high=MAX_IMAGE_SIZE,
                              multiple_of=DOWNSAMPLE_FACTOR)
    channels: int = setting(0, "0 (the dataset's: Camelyon16 RGB, the others gray), 1 (gray) "
                               "or 3 (RGB)", choices=(0, 1, 3))
    seed: int = setting(0, "the run's seed")
    val_fraction: float = setting(0.0, "normal training images held out (0: the paper's "
                                       "protocol)", low=0, below=1)
    num_epochs: int = setting(20, "epochs", low=1)
    batch_size: int = setting(64, "images per training batch", low=1, high=MAX_BATCH)
    learning_rate: float = setting(1e-3, "Adam's learning rate", above=0)
    eval_every_epochs: int = setting(25, "epochs between evaluations (also after epoch 1 and "
                                         "the last)", low=1)
    checkpoint_every_epochs: int = setting(5, "epochs between checkpoints (also at every "
                                              "evaluation)", low=1)
    checkpoints_to_keep: int = setting(3, "the newest checkpoints kept (a fallback when the "
                                          "newest cannot be read)", low=2)
    entropy_estimators: tuple = setting(
        ("gaussian", "knn"), "estimators of the latent entropy H(Z) of train-normal, "
        "test-normal and test-abnormal codes at every evaluation (estimators/entropy.py)",
        choices=tuple(entropy.ESTIMATORS))
    # Entropy-controlled training: loss = MSE + entropy_weight * (matrix Renyi-2 entropy of
    # the batch's latent codes).
    entropy_weight: float = setting(0.0, "weight of the entropy term")
    entropy_weights: tuple = setting((), "an ensemble axis of entropy weights", item=float,
                                     distinct=True)
    entropy_bootstrap: int = setting(50, "resamples behind each entropy estimate's 95% "
                                         "interval (0: no intervals)", low=0)
    # Rate-distortion training (needs rate.enabled, the learned rate of nets/rate.py):
    # loss = reconstruction + rate_weight * bits of the quantised code.
    rate_weight: float = setting(0.0, "weight of the rate term", low=0)
    rate_weights: tuple = setting((), "an ensemble axis of rate weights", item=float, low=0,
                                  distinct=True)


@dataclasses.dataclass(frozen=True)
class Eval:
    """The config group `eval`."""
    batch_size: int = setting(64, "images per scoring batch (it does not change the "
                                  "scores)", low=1, high=MAX_BATCH)
    num_examples: int = setting(4, "examples per class in examples.png", low=0)
    false_positive_rate: float = setting(0.05, "the false-positive rate on normal images "
                                               "that sets each decision threshold",
                                         above=0, below=1)
    code_knn_k: int = setting(5, "the neighbour whose distance is the code_knn score", low=1)


def _require(condition, message):
    if not condition:
        raise UserError(message)


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
    """Raises UserError naming the first bad key; runs before any data or compute. Every
    key's own rule is declared (`Run`, `Eval`, `execution.Execution`, the method's and
    the network's groups, `input_limits`); the rules between keys follow."""
    pipeline.check_dataset_name(config.dataset)
    settings.check(Run, config, others_allowed=True)
    settings.check(Eval, config.eval, "eval")
    settings.check(execution.Execution, config.execution, "execution")
    settings.check(Limits, config.get("input_limits", None) or {}, "input_limits")
    registry.check_config(config)
    value, fixed = config.channels, pipeline.dataset_channels(config.dataset)
    _require(not value or fixed is None or value == fixed,
             f"Dataset {config.dataset} has {fixed} channel(s) but config key channels is "
             f"{value}: leave channels at 0 to read the dataset as it is.")
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
