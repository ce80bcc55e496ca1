"""`memae`: the AE whose code is replaced by an attention-weighted sum of learned memory slots
(Gong et al. 2019), with the attention's entropy in the loss."""

import dataclasses

import jax.numpy as jnp

from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import Method


@dataclasses.dataclass(frozen=True)
class Settings:
    """Config group `memae`, at the reference's values."""

    slots: int = setting(25, "memory slots", low=1)
    shrink_threshold: float = setting(0.0025, "attention weights below this become 0",
                                      low=0.0)
    entropy_weight: float = setting(0.0002, "weight of the attention's entropy", low=0.0)


def attention_entropy(attention, epsilon=1e-12):
    """The entropy of each row's memory attention: [B]."""
    return -jnp.sum(attention * jnp.log(attention + epsilon), axis=-1)


def memae_loss(method, outputs, images, latent_mask):
    del latent_mask
    mse = parts.per_image_mse(outputs["recon"], images)
    att_entropy = attention_entropy(outputs["att"])
    return mse + method.settings.entropy_weight * att_entropy, {
        "mse": mse, "attention_entropy": att_entropy}


def _model(method, latent_size, axis_name):
    s = method.settings
    return parts.autoencoder(method, latent_size, axis_name, latent="memory",
                             memory_slots=s.slots, shrink_threshold=s.shrink_threshold)


METHODS = (Method("memae", model=_model, loss=memae_loss,
                           error_map=parts.squared_error, group="memae",
                           settings_type=Settings),)
