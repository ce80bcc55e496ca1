"""`dae`: a U-Net denoiser of coarse noise (Kascenas et al. 2022) with no latent code; the
score is its squared-error map. The reference trains it on 128x128 inputs in batches of 16
(`OVERRIDES`, applied when it runs unless `method_overrides.dae` is changed)."""

import dataclasses

import jax
import jax.numpy as jnp

from ae4ad_jax.core import datasets
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import image_losses, parts
from ae4ad_jax.methods.contract import CORRUPT_STREAM, Batch, Method
from ae4ad_jax.nets.unet import UNet

OVERRIDES = (("image_size", 128), ("batch_size", 16))


@dataclasses.dataclass(frozen=True)
class Settings:
    """Config group `dae`, at the reference's values."""

    noise_resolution: int = setting(16, "side of the noise grid before upsampling", low=1)
    noise_std: float = setting(0.2, "standard deviation of the noise", low=0.0)
    depth: int = setting(5, "levels of the U-Net", low=1)
    width_log2: int = setting(6, "log2 of the U-Net's first width", low=1)


def _model(method, latent_size, axis_name):
    del latent_size, axis_name  # no latent code; GroupNorm has no batch statistics
    s = method.settings
    return UNet(channels=method.common.channels, depth=s.depth, width_log2=s.width_log2,
                dtype=method.common.architecture.dtype)


def coarse_noise(method, images, batch: Batch):
    """Gaussian noise (std `noise_std`) at `noise_resolution`^2 per image and channel,
    upsampled bilinearly (corners aligned), rolled by one random shift per batch, kept on
    the foreground (pixels above the batch minimum) for brain MRI, then shifted and
    scaled as the reference does: x + 2 * (noise - 0.5)."""
    s = method.settings
    b, height, width, channels = images.shape
    r = s.noise_resolution
    noise = jax.vmap(lambda key: jax.random.normal(key, (r, r, channels)))(
        batch.keys(CORRUPT_STREAM)) * s.noise_std
    noise = image_losses.resize_align_corners(noise, height, width)
    shift_rows, shift_cols = jax.random.randint(batch.key, (2,), 0, jnp.array([height, width]))
    noise = jnp.roll(noise, (shift_rows, shift_cols), axis=(1, 2))
    spec = datasets.SPECS.get(method.common.dataset)
    if spec is not None and spec.background:  # the noise stays on the foreground
        noise = noise * (images > batch.min(images))
    return images + (noise - 0.5) * 2.0


def check(method, config):
    divisor = 2 ** (method.settings.depth - 1)
    if config.image_size % divisor:
        raise UserError(f"Config key image_size must be a multiple of {divisor} for the DAE's "
                        f"U-Net of depth {method.settings.depth}, got {config.image_size}.")


METHODS = (Method("dae", model=_model, loss=parts.mse_loss,
                         error_map=parts.squared_error, corrupt=coarse_noise, check=check,
                         has_latent=False, group="dae", settings_type=Settings,
                         overrides=OVERRIDES),)
