"""Per-pixel error maps of the benchmark's losses and the resampling they need.

Images are NHWC in [-1, 1]. Every map here is [B, h, w, C] before the caller
averages channels; maps computed on a smaller grid (SSIM's valid window,
VGG features) are resized to the input's size bilinearly, as PyTorch's
`interpolate(mode="bilinear", align_corners=False)`.
"""

import jax
import jax.numpy as jnp
import numpy as np

SSIM_K1, SSIM_K2 = 0.01, 0.03


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian window of SSIM: [size]."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).astype(np.float32)


def _blur(x, window):
    """Separable 'valid' Gaussian filter of [B, H, W, C] per channel: [B, H-k+1, W-k+1, C]."""
    k = len(window)
    w = jnp.asarray(window)
    rows = sum(w[i] * x[:, i:x.shape[1] - k + 1 + i] for i in range(k))
    return sum(w[i] * rows[:, :, i:x.shape[2] - k + 1 + i] for i in range(k))


def ssim_map(x, y, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0):
    """SSIM of [B, H, W, C] images at every valid window position: [B, H-k+1, W-k+1, C]
    (Wang et al. 2004; Gaussian window, K = (0.01, 0.03), no padding)."""
    window = gaussian_window(window_size, sigma)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x ** 2
    var_y = _blur(y * y, window) - mu_y ** 2
    cov = _blur(x * y, window) - mu_x * mu_y
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    return (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * contrast_structure


def to_unit_range(x):
    """[-1, 1] -> [0, 1], clipped (the reference's SSIM input)."""
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def resize_bilinear(x, height: int, width: int):
    """Bilinear resize of [B, h, w, C] with half-pixel centres (torch align_corners=False)."""
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "linear",
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
