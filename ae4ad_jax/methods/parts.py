"""Parts that several methods share: per-row terms, error maps, gradient scores, and the
AE built from the shared settings."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.nets.autoencoder import AutoEncoder


def per_image_mse(recon, images):
    """Mean squared error of each image over pixels and channels: [B]."""
    return jnp.mean(jnp.square(recon - images), axis=(1, 2, 3))


def latent_mean(values, latent_mask):
    """Mean over each row's own latent units (an ensemble member's d, not max(d)): [B]."""
    mask = jnp.broadcast_to(latent_mask, values.shape[-1:])
    sums = jnp.sum(values * mask, axis=tuple(range(1, values.ndim)))
    return sums / (jnp.sum(mask) * np.prod(values.shape[1:-1]))


def gaussian_kl(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, 1)) per latent unit."""
    return -0.5 * (1.0 + log_var - jnp.square(mu) - jnp.exp(log_var))


def squared_error(method, outputs, images):
    """The reference's map: squared error averaged over channels, [B, H, W]."""
    return jnp.mean(jnp.square(outputs["recon"] - images), axis=-1)


def map_loss(method, outputs, images, latent_mask, error_map):
    """The loss whose per-pixel form is the method's map (MSE, L1): each row's mean."""
    del latent_mask
    return jnp.mean(error_map(method, outputs, images), axis=(1, 2)), {}


mse_loss = functools.partial(map_loss, error_map=squared_error)


def input_gradient(forward, images, row_keys, term):
    """d (sum over rows of term(outputs, x)) / d x: each row's gradient of its own term
    (test-time BatchNorm uses running statistics, so rows do not interact)."""
    def total(x):
        outputs = forward(x, row_keys)
        return jnp.sum(term(outputs, x)), outputs

    return jax.grad(total, has_aux=True)(images)


def gradient_anomaly(method, forward, images, row_keys, latent_mask):
    """AE-Grad, VAE-Rec: |d MSE(x, f(x)) / dx|, averaged over channels."""
    grad, outputs = input_gradient(forward, images, row_keys,
                                   lambda out, x: per_image_mse(out["recon"], x))
    maps = jnp.mean(jnp.abs(grad), axis=-1)
    return maps, jnp.mean(maps, axis=(1, 2)), outputs


def autoencoder(method, latent_size, axis_name, **variant):
    """The benchmark's AE from the shared settings; `variant` sets AutoEncoder fields
    (and `spatial`, the architecture's bottleneck form)."""
    c = method.common
    architecture = c.architecture
    if "spatial" in variant:
        architecture = dataclasses.replace(architecture, spatial=variant.pop("spatial"))
    return AutoEncoder(latent_size=latent_size, channels=c.channels, architecture=architecture,
                       rate=c.rate if method.plain_code else None, axis_name=axis_name,
                       kernels=c.kernels, **variant)
