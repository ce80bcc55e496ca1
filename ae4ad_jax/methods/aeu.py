"""`aeu`: the AE whose decoder also predicts a per-pixel log-variance v; loss e^-v err + v,
score e^-v err."""

import functools

import jax.numpy as jnp

from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import Method


def uncertainty_error(method, outputs, images):
    """The squared error divided by the predicted variance, [B, H, W]."""
    error = jnp.square(outputs["recon"] - images) * jnp.exp(-outputs["log_var"])
    return jnp.mean(error, axis=-1)


def uncertainty_loss(method, outputs, images, latent_mask):
    del latent_mask
    weighted = jnp.square(outputs["recon"] - images) * jnp.exp(-outputs["log_var"])
    rows = jnp.mean(weighted + outputs["log_var"], axis=(1, 2, 3))
    return rows, {"mse": parts.per_image_mse(outputs["recon"], images),
                  "log_var": jnp.mean(outputs["log_var"], axis=(1, 2, 3))}


METHODS = (Method("aeu", model=functools.partial(parts.autoencoder, log_variance=True),
                         loss=uncertainty_loss, error_map=uncertainty_error,
                         plain_code=True),)
