"""The one image preprocessing that training and scoring share.

Decoded images become what the model reads in two steps: `convert_image` (PIL's
gray or RGB conversion and a bilinear resize to the model's size, uint8), applied
when a dataset is prepared and when files or arrays are scored, then `to_float`
on the device ([0, 255] -> [-1, 1], the reference's ToTensor + Normalize(0.5, 0.5)).
`conform` brings arrays given in memory (the API) through the same conversion.
"""

import jax.numpy as jnp
import numpy as np
from PIL import Image

from ae4ad_jax.core.errors import UserError


def convert_image(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """A decoded image as the model sees it, uint8 [S, S, C]: PIL's conversion to gray
    ("L", ITU-R 601-2 luma) or RGB, then a bilinear resize to S x S. Training data and
    scored images both pass through here."""
    image = image.convert("L" if channels == 1 else "RGB").resize(
        (image_size, image_size), resample=Image.BILINEAR)
    return np.asarray(image, np.uint8).reshape(image_size, image_size, channels)


def to_float(images):
    """uint8 [0, 255] -> float32 [-1, 1], as the reference's ToTensor + Normalize(0.5, 0.5)."""
    return (images.astype(jnp.float32) / 255.0 - 0.5) / 0.5


def to_uint8(image, where) -> np.ndarray:
    """uint8 as given; other integers must lie in 0-255, floats in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise UserError(f"{where} has dtype {image.dtype}; give uint8 (0-255) or floats "
                        "in [0, 1].")
    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if np.issubdtype(image.dtype, np.integer):
        if low < 0 or high > 255:
            raise UserError(f"{where} is {image.dtype} with values {low:g} to {high:g}; "
                            "integer images must lie in 0-255 (scale them to uint8 first).")
        return image.astype(np.uint8)
    if not (np.isfinite(image).all() and low >= 0.0 and high <= 1.0):
        raise UserError(f"{where} is {image.dtype} with values {low:g} to {high:g}; float "
                        "images must lie in [0, 1].")
    return np.rint(image * 255.0).astype(np.uint8)


def conform(images, image_size: int, channels: int) -> np.ndarray:
    """Arrays [N, H, W], [N, H, W, C] (C = 1 or 3) or a list of [H, W(, C)] images of any
    sizes, to uint8 [N, S, S, channels] by the training preprocessing: gray or RGB
    conversion (RGB -> gray by ITU-R 601-2 luma, gray -> RGB by copying) and a bilinear
    resize. Images already of the model's size and channels pass unchanged."""
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        raise UserError("Images must be an array [N, H, W] or [N, H, W, C], or a list of "
                        f"[H, W] / [H, W, C] arrays; got {type(images).__name__} of shape "
                        f"{np.shape(images)}.")
    out = np.zeros((len(images), image_size, image_size, channels), np.uint8)
    for i, image in enumerate(images):
        image = to_uint8(image, f"Image {i}")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            pil = Image.fromarray(np.ascontiguousarray(image), "L")
        elif image.ndim == 3 and image.shape[-1] == 3:
            pil = Image.fromarray(np.ascontiguousarray(image), "RGB")
        else:
            raise UserError(f"Image {i} has shape {image.shape}; images are [H, W] or "
                            "[H, W, C] with 1 or 3 channels.")
        out[i] = convert_image(pil, image_size, channels)
    return out
