"""What several methods' losses and maps share: the [0, 1] range, the relative feature
error, and the resampling of maps computed on a smaller grid (SSIM's valid window, VGG
features) to the input's size, bilinearly as PyTorch's `interpolate(mode="bilinear",
align_corners=False)`; the DAE's noise is upsampled with corners aligned.

Images are NHWC in [-1, 1]. Every map here is [B, h, w, C] before the caller
averages channels.
"""

import jax
import jax.numpy as jnp
import numpy as np


def to_unit_range(x):
    """[-1, 1] -> [0, 1], clipped (the reference's SSIM input)."""
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def resize_bilinear(x, height: int, width: int):
    """Bilinear resize of [B, h, w, C] with half-pixel centres (torch align_corners=False):
    `jax.image.resize`'s own computation, called through `scale_and_translate`, which
    (unlike `resize`) also converts to ONNX with a symbolic batch size. Enlarging (every
    use here) it gives `resize`'s numbers bitwise; shrinking, within 1e-5."""
    scale = jnp.array([height / x.shape[1], width / x.shape[2]], jnp.float32)
    return jax.image.scale_and_translate(x, (x.shape[0], height, width, x.shape[-1]), (1, 2),
                                         scale, jnp.zeros(2, jnp.float32), "linear",
                                         antialias=False)


def _align_corners_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] linear interpolation weights with the corners aligned."""
    positions = (np.arange(size_out) * (size_in - 1) / max(size_out - 1, 1)
                 if size_out > 1 else np.zeros(1))
    low = np.clip(np.floor(positions).astype(int), 0, size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = positions - low
    matrix = np.zeros((size_out, size_in), np.float32)
    matrix[np.arange(size_out), low] += 1 - frac
    matrix[np.arange(size_out), high] += frac
    return matrix


def resize_align_corners(x, height: int, width: int):
    """Bilinear resize of [B, h, w, C] with corners aligned (torch align_corners=True)."""
    rows = jnp.asarray(_align_corners_matrix(x.shape[1], height))
    cols = jnp.asarray(_align_corners_matrix(x.shape[2], width))
    return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols)


def relative_l1(features_input, features_recon):
    """The relative perceptual L1 error: |f(x) - f(x_hat)| / mean |f(x)| of each image
    (the denominator without gradient): [B, h, w, C]."""
    scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(features_input), axis=(1, 2, 3),
                                           keepdims=True))
    return jnp.abs(features_input - features_recon) / scale
