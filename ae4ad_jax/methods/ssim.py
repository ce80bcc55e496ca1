"""`ae-ssim`: the AE trained and scored with 1 - SSIM on [0, 1] images (Wang et al. 2004:
Gaussian window, K = (0.01, 0.03), valid positions only), computed by DeepMind's `dm_pix`,
which equals the reference's definition on the test images (tests/methods/test_methods.py
holds it against a numpy loop)."""

import dataclasses

import dm_pix
import jax.numpy as jnp

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import image_losses, parts
from ae4ad_jax.methods.contract import Method


@dataclasses.dataclass(frozen=True)
class Settings:
    """SSIM's window (config group `ssim`), at the reference's values."""

    window: int = setting(11, "side of the Gaussian window (odd, at most image_size)", low=1,
                          odd=True)
    sigma: float = setting(1.5, "standard deviation of the Gaussian window", low=0.0)


def ssim_map(x, y, window: int, sigma: float):
    """SSIM of [B, H, W, C] images in [0, 1] at every valid window position:
    [B, H - window + 1, W - window + 1, C]."""
    return dm_pix.ssim(x, y, max_val=1.0, filter_size=window, filter_sigma=sigma,
                       return_map=True)


def _error(method, outputs, images):
    """1 - SSIM at every valid window position, [B, h, w, C]."""
    s = method.settings
    return 1.0 - ssim_map(image_losses.to_unit_range(images),
                          image_losses.to_unit_range(outputs["recon"]), s.window, s.sigma)


def ssim_error(method, outputs, images):
    """1 - SSIM resized from the valid windows to the input, [B, H, W]."""
    error = _error(method, outputs, images)
    return jnp.mean(image_losses.resize_bilinear(error, *images.shape[1:3]), axis=-1)


def ssim_loss(method, outputs, images, latent_mask):
    del latent_mask
    return jnp.mean(_error(method, outputs, images), axis=(1, 2, 3)), {}


def check(method, config):
    if method.settings.window > config.image_size:
        raise UserError(f"Config key ssim.window must be at most image_size "
                        f"({config.image_size}), got {method.settings.window}.")


METHODS = (Method("ae-ssim", model=parts.autoencoder, loss=ssim_loss,
                             error_map=ssim_error, check=check, plain_code=True,
                             group="ssim", settings_type=Settings),)
