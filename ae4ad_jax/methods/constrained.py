"""`constrained-ae`: the AE plus ||z - E(x_hat)||^2, the reconstruction re-encoded by the same
encoder."""

import functools

import jax.numpy as jnp

from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import Method


def constrained_loss(method, outputs, images, latent_mask):
    mse = parts.per_image_mse(outputs["recon"], images)
    consistency = parts.latent_mean(jnp.square(outputs["z"] - outputs["z_rec"]), latent_mask)
    return mse + consistency, {"mse": mse, "latent_consistency": consistency}


METHODS = (Method(
    "constrained-ae", model=functools.partial(parts.autoencoder, reencode=True),
    loss=constrained_loss, error_map=parts.squared_error, plain_code=True),)
