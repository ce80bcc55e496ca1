"""The method contract: what every reconstruction method gives the trainer and the scorer.

A `Method` is a name and a few plain functions of the bound method (its own
settings in `method.settings`, the shared ones in `method.common`):
- `model`: the Flax module (`nets/`);
- `corrupt`: the training input made from the clean batch (CeAE's erasure, the
  DAE's coarse noise; none for the others); the loss always sees the clean images;
- `loss`: each row's loss [B] and per-row terms to log, from the model outputs;
- `error_map` or `anomaly`: the anomaly map [B, H, W] (or none) and the image score
  [B], given a forward function of the trained model, so that gradient scores and
  GANomaly's test-time batch statistics fit the same call;
- `constants`: frozen train-state parts (the perceptual AE's VGG19 weights);
- `after_epoch`: an edit of the state between epochs (GANomaly re-initialises a
  collapsed discriminator).
A method's own hyperparameters are one declared group (`settings_type`, a frozen
dataclass of `core.settings.setting` fields) named `group` in the config; the
config defaults, the checks and the values its parts read all come from it.
The trainer, evaluation, ensembles, checkpoints and sharding know only this
contract; `objective` adds the latent-entropy and rate terms to every method with
a latent code.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ae4ad_jax.estimators import entropy
from ae4ad_jax.nets.autoencoder import Architecture
from ae4ad_jax.nets.kernels import Kernels
from ae4ad_jax.nets.rate import Rate

# The random streams, each folded into a key. Of a member's key: the epochs' orders
# (training/step.py), each step's key, test-time sampling (evaluation/scoring.py) and the
# method's edit after an epoch. Of a row's key within a step: the method's corruption of
# its input and the model's own sampling.
DATA_STREAM, STEP_STREAM, EVAL_STREAM, EPOCH_STREAM = 0, 1, 2, 3
CORRUPT_STREAM, MODEL_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class Common:
    """What every method reads besides its own group: the data, the architecture (config
    group `model`), the layers' kernels on this backend, and the learned rate (None when
    off)."""

    channels: int
    image_size: int
    dataset: str
    architecture: Architecture
    kernels: Kernels
    rate: Rate | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    model: Callable  # (method, latent_size, axis_name) -> nn.Module
    loss: Callable  # (method, outputs, images, latent_mask) -> (rows [B], {name: [B]})
    error_map: Callable | None = None  # (method, outputs, images) -> [B, H, W]
    anomaly: Callable | None = None  # (method, forward, images, row_keys, latent_mask)
    corrupt: Callable | None = None  # (method, images, batch) -> training input
    constants: Callable | None = None  # (method) -> {collection: frozen variables}
    after_epoch: Callable | None = None  # (state, epoch means, key) -> state, one member
    check: Callable | None = None  # (method, config) -> None; raises UserError
    has_latent: bool = True  # a code z: entropy estimates, latent sizes, the entropy term
    plain_code: bool = False  # a plain code z the learned rate can quantise
    per_image: bool = False  # scored one image at a time: a row's score needs no other row
    group: str | None = None  # the config group of its hyperparameters
    settings_type: type | None = None  # their declaration
    overrides: tuple = ()  # ((top-level config key, value), ...) it runs with by default
    settings: object = None  # bound: the group's values
    common: Common | None = None  # bound: the shared settings

    def create_model(self, latent_size: int, axis_name=None):
        return self.model(self, latent_size, axis_name)

    def init_variables(self, latent_size: int, key, shape) -> dict:
        """The variables of the model of `latent_size` initialised from `key` for inputs
        of `shape` [B, H, W, C] (abstract arrays under `jax.eval_shape`)."""
        return self.create_model(latent_size).init(
            key, jnp.zeros(shape, jnp.float32), train=False,
            row_keys=jnp.zeros((shape[0], 2), jnp.uint32))

    def frozen_variables(self) -> dict:
        return self.constants(self) if self.constants else {}

    def score(self, forward, images, row_keys, latent_mask):
        """(map [B, H, W] or None, score [B], outputs) of the trained model."""
        if self.anomaly is not None:
            return self.anomaly(self, forward, images, row_keys, latent_mask)
        outputs = forward(images, row_keys)
        maps = self.error_map(self, outputs, images)
        return maps, jnp.mean(maps, axis=(1, 2)), outputs


# ----------------------------------------------------------------------------- batch context


@dataclasses.dataclass
class Batch:
    """This device's rows of a global batch, inside a train step: `weights` [B] (0 for
    padding), `key` the step's key (the same on every device), `row_keys` [B] keys of
    the rows' global positions, so per-row randomness does not depend on the split."""

    weights: jax.Array
    key: jax.Array
    row_keys: jax.Array
    latent_mask: jax.Array
    entropy_weight: jax.Array
    rate_weight: jax.Array
    axis_name: str | None = None

    def total(self, value):
        return value if self.axis_name is None else jax.lax.psum(value, self.axis_name)

    @property
    def count(self):
        return jnp.maximum(self.total(jnp.sum(self.weights)), 1.0)

    @property
    def shards(self):
        return self.total(1.0)

    def mean(self, values):
        """This device's share of the global weighted mean of per-row `values` [B]."""
        return jnp.sum(values * self.weights) / self.count

    def min(self, values):
        """The minimum of `values` [B, ...] over the real rows of the global batch."""
        rows = self.weights.reshape((-1,) + (1,) * (values.ndim - 1)) > 0
        local = jnp.min(jnp.where(rows, values, jnp.inf))
        return local if self.axis_name is None else jax.lax.pmin(local, self.axis_name)

    def keys(self, stream: int):
        return jax.vmap(jax.random.fold_in, (0, None))(self.row_keys, stream)


def row_keys(key, positions):
    """One key per row: `positions` [B] are the rows' places in the global batch."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, positions)


def objective(method, outputs, images, batch: Batch):
    """(this device's share of the loss, shares of logged terms, global logged terms)."""
    rows, aux = method.loss(method, outputs, images, batch.latent_mask)
    reconstruction = batch.mean(rows)
    shares = {"reconstruction_loss": reconstruction,
              **{name: batch.mean(values) for name, values in aux.items()}}
    if not method.has_latent:
        return reconstruction, shares, {}
    share = reconstruction
    if "bits" in outputs:  # the rate: the encoder pays lambda per bit, the density fits
        shares["rate_bits"] = batch.mean(outputs["bits"])
        share = share + batch.mean(batch.rate_weight * outputs["bits"]
                                   + outputs["density_bits"])
    z, weights = outputs["z"], batch.weights
    if batch.axis_name is not None:  # every device computes the entropy of the whole batch
        z = jax.lax.all_gather(z, batch.axis_name, tiled=True)
        weights = jax.lax.all_gather(weights, batch.axis_name, tiled=True)
    latent_entropy = entropy.batch_renyi2(z, weights, batch.latent_mask)
    # Each device's copy of the entropy term sends gradients to every device's codes
    # (all_gather's transpose sums them), hence the 1 / shards.
    share = share + batch.entropy_weight * latent_entropy / batch.shards
    return share, shares, {"latent_entropy": latent_entropy}
