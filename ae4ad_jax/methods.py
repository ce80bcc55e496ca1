"""Reconstruction methods: how each builds its model, computes its loss and scores.

Every method plugs into the same trainer and evaluator through `Method`:
the loss sees the model outputs and the clean images and returns each row's loss
[B] and a dict of per-row terms to log; the trainer averages them over the real
rows of the global batch (on every device together). The score map is per
pixel, [B, H, W].
"""

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from ae4ad_jax import execution, models


def per_image_mse(recon, images):
    """Mean squared error of each image over pixels and channels: [B]."""
    return jnp.mean(jnp.square(recon - images), axis=(1, 2, 3))


def squared_error_map(outputs, images):
    """The reference's anomaly map: squared error averaged over channels, [B, H, W]."""
    return jnp.mean(jnp.square(outputs["recon"] - images), axis=-1)


def ae_loss(outputs, images, rng):
    del rng
    return per_image_mse(outputs["recon"], images), {}


def create_autoencoder(config, latent_size=None, axis_name=None) -> models.AutoEncoder:
    m = config.model
    return models.AutoEncoder(
        latent_size=latent_size or config.latent_size, channels=config.channels,
        base_width=m.base_width, expansion=m.expansion, hidden_width=m.hidden_width,
        encoder_depth=m.encoder_depth, decoder_depth=m.decoder_depth, spatial=m.spatial,
        kernels=execution.model_kernels(config), dtype=jnp.dtype(m.compute_dtype),
        axis_name=axis_name)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    create_model: Callable
    loss: Callable
    score_map: Callable


METHODS = {
    "ae": Method("ae", create_autoencoder, ae_loss, squared_error_map),
}
