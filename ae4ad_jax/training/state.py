"""The train state: every member's parameters, BatchNorm statistics, optimiser state and
random key, stacked along a leading member axis, each member initialised as the
standalone model of its latent size (`parallel/ensemble.py`).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from ae4ad_jax.core import trees
from ae4ad_jax.nets.layers import LATENT_UNITS
from ae4ad_jax.parallel import ensemble


class TrainState(train_state.TrainState):
    batch_stats: Any
    rng: jax.Array  # the member's raw uint32[2] key
    latent_mask: jax.Array  # [max(d)]: 1 for the member's own latent units
    entropy_weight: jax.Array  # lambda of the latent-entropy term of the loss
    rate_weight: jax.Array  # lambda of the rate term (bits per image) of the loss
    constants: Any  # frozen variable collections of the method (not trained, not saved)


def create_optimizer(config) -> optax.GradientTransformation:
    """The reference's Adam; with the learned rate on, the rate's density model has its own
    learning rate (`rate.learning_rate`: it must fit within a short schedule)."""
    o = config.optim
    adam = optax.adam(config.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
    if not config.rate.enabled:
        return adam
    density = optax.adam(config.rate.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
    return optax.multi_transform({"model": adam, "density": density}, _density_labels)


def _density_labels(params):
    def label(path, _):
        names = trees.path_names(path)
        return "density" if LATENT_UNITS + "_rate" in names else "model"

    return jax.tree_util.tree_map_with_path(label, params)


@functools.partial(jax.jit, static_argnames=("method", "latent_size", "width", "shape", "tx",
                                             "apply_fn"))
def _member_state(seed, entropy_weight, rate_weight, *, method, latent_size, width, shape, tx,
                  apply_fn):
    """One member: the standalone model of its latent size initialised from its seed, its
    latent axes padded with zeros to the ensemble's `width` (one compiled program)."""
    init_key, state_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = method.init_variables(latent_size, init_key, shape)
    return TrainState.create(
        apply_fn=apply_fn, tx=tx,
        params=ensemble.resize_latent(variables["params"], width),
        batch_stats=ensemble.resize_latent(variables.get("batch_stats", {}), width),
        rng=state_key, constants={},
        latent_mask=jnp.asarray(ensemble.latent_mask(latent_size, width)),
        entropy_weight=entropy_weight, rate_weight=rate_weight)


def create_train_state(config, method, members) -> TrainState:
    """All members stacked along a leading axis; each initialised as a standalone model."""
    width = max(m["latent_size"] for m in members)
    tx, apply_fn = create_optimizer(config), method.create_model(width).apply
    shape = (1, config.image_size, config.image_size, config.channels)
    states = [_member_state(m["seed"], jnp.float32(m.get("entropy_weight", 0.0)),
                            jnp.float32(m.get("rate_weight", 0.0)), method=method,
                            latent_size=m["latent_size"], width=width, shape=shape, tx=tx,
                            apply_fn=apply_fn)
              for m in members]
    constants = method.frozen_variables()
    return ensemble.stack(states).replace(
        constants=ensemble.stack([constants] * len(members)) if constants else {})
