"""The VAE family: `vae` (Gaussian code, z sampled in training and at test time; the
squared-error map), `vae-rec` (|d MSE / dx|) and `vae-combi` (the squared error times
|d KL / dx|)."""

import dataclasses
import functools

import jax.numpy as jnp

from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import Method


@dataclasses.dataclass(frozen=True)
class Settings:
    """Config group `vae`."""

    kl_weight: float = setting(0.005, "weight of the KL term (KL averaged over latent units)",
                               low=0.0)


def vae_loss(method, outputs, images, latent_mask):
    mse = parts.per_image_mse(outputs["recon"], images)
    kl = parts.latent_mean(parts.gaussian_kl(outputs["mu"], outputs["log_var"]), latent_mask)
    return mse + method.settings.kl_weight * kl, {"mse": mse, "kl": kl}


def combined_gradient_anomaly(method, forward, images, row_keys, latent_mask):
    """VAE-Combi: the squared error times |d KL / dx|, averaged over channels."""
    grad, outputs = parts.input_gradient(
        forward, images, row_keys,
        lambda out, x: parts.latent_mean(parts.gaussian_kl(out["mu"], out["log_var"]),
                                         latent_mask))
    maps = jnp.mean(jnp.square(outputs["recon"] - images) * jnp.abs(grad), axis=-1)
    return maps, jnp.mean(maps, axis=(1, 2)), outputs


VAE = dict(model=functools.partial(parts.autoencoder, latent="gaussian"), loss=vae_loss,
           group="vae", settings_type=Settings)
METHODS = (
    Method("vae", error_map=parts.squared_error, **VAE),
    Method("vae-rec", anomaly=parts.gradient_anomaly, **VAE),
    Method("vae-combi", anomaly=combined_gradient_anomaly, **VAE),
)
