"""`ceae` (context encoding): the AE trained to fill one erased square of its input; the
target is the clean image."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import CORRUPT_STREAM, Batch, Method


@dataclasses.dataclass(frozen=True)
class Settings:
    """Config group `ceae`, at the reference's values."""

    erase_fraction: float = setting(0.024, "area of the erased square, of the image's",
                                    low=0.0, high=1.0)
    fill_value: float = setting(-1.0, "value of the erased pixels (images are in [-1, 1])")


def erase_square(method, images, batch: Batch):
    """One square of `erase_fraction` of the image area per image, at a uniform position,
    set to `fill_value` (torchvision RandomErasing, scale and ratio fixed)."""
    s = method.settings
    _, height, width, _ = images.shape
    side = int(round(float(np.sqrt(s.erase_fraction * height * width))))

    def one(image, key):
        top_key, left_key = jax.random.split(key)
        top = jax.random.randint(top_key, (), 0, height - side + 1)
        left = jax.random.randint(left_key, (), 0, width - side + 1)
        rows = (jnp.arange(height) >= top) & (jnp.arange(height) < top + side)
        cols = (jnp.arange(width) >= left) & (jnp.arange(width) < left + side)
        inside = rows[:, None, None] & cols[None, :, None]
        return jnp.where(inside, s.fill_value, image)

    return jax.vmap(one)(images, batch.keys(CORRUPT_STREAM))


METHODS = (Method("ceae", model=parts.autoencoder, loss=parts.mse_loss,
                          error_map=parts.squared_error, corrupt=erase_square,
                          plain_code=True, group="ceae", settings_type=Settings),)
