"""Forms of the AE's layers that XLA:CPU runs faster than its own lowering: `CPU`.

Each computes the same function as `kernels.XLA` (values and gradients; see
tests/nets/test_cpu_kernels.py) and is chosen by `execution.kernels` ("auto": on
CPU only). Custom VJPs make the backward passes use the same forms, so these
kernels support reverse-mode differentiation only (no `jax.jvp`).

- Resampling convolutions (4x4, stride 2, padding 1) are lowered by the
  channel count of their full-resolution side: next to the image as
  space-to-depth convolutions (2x2, stride 1, over 2x2 blocks), elsewhere as XLA's
  strided convolution (down) or four phase convolutions without the inserted
  zeros (up). Each input gradient is the adjoint resampling in the same scheme.
  Where a layer is only evaluated (scoring), the first convolution is a sum of
  broadcast products and the last transposed convolution of a one-channel AE a
  matrix product with shifted sums.
- BatchNorm's sums are matrix products over the batch with a closed-form
  backward pass (XLA:CPU reduces far slower than it multiplies).
- ReLU is a select, which XLA:CPU computes once instead of re-fusing it into
  each consumer (among them the transposes of the weight gradients).
- `apply_xla_cpu_flags` makes XLA:CPU keep its own convolutions and use YNNPACK
  for the matrix products only; command-line entry points call it.

Measurements behind these choices: docs/performance.md.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
from jax import lax

from ae4ad_jax.nets import kernels

# Channel limits of each form, by the full-resolution side's channel count.
S2D_DOWN_MAX_CHANNELS = 4  # trained and evaluated downsampling by space-to-depth
TAPS_DOWN_MAX_CHANNELS = 2  # evaluated downsampling by broadcast products
S2D_UP_MAX_CHANNELS = 4  # trained upsampling by space-to-depth (else phases)
S2D_UP_INFERENCE_MAX_CHANNELS = 16  # evaluated upsampling by space-to-depth
PRODUCTS_UP_MAX_CHANNELS = 1  # evaluated upsampling by one matrix product

XLA_CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"


def apply_xla_cpu_flags() -> bool:
    """Adds XLA_CPU_FLAG to XLA_FLAGS unless the user set the option; True if in force.

    Must run before JAX starts its backends (the first computation); it only
    concerns the CPU backend.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags:
        return XLA_CPU_FLAG in flags
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FLAG}".strip()
    return True


def _conv(x, kernel, stride, padding):
    return kernels.convolve(x, kernel, (stride, stride), ((padding, padding),) * 2)


def _flip_io(kernel):
    """The HWIO kernel of the adjoint of a (4, 2, 1) resampling convolution."""
    return jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


def _pad1(x):
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def space_to_depth(x):
    """[N, 2h, 2w, C] -> [N, h, w, 4C]: each 2x2 block's pixels as channels (row, col, C)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(y):
    """The inverse of `space_to_depth`: [N, h, w, 4C] -> [N, 2h, 2w, C]."""
    n, h, w, c4 = y.shape
    y = y.reshape(n, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, c4 // 4)


def downsample_by_s2d(x, kernel):
    """Conv(4, 2, 1) as a 2x2 stride-1 convolution over the padded input's 2x2 blocks:
    padded row 2(i + d) + p meets kernel row 2d + p. Needs even H and W."""
    i, o = kernel.shape[2:]
    blocks = kernel.reshape(2, 2, 2, 2, i, o).transpose(0, 2, 1, 3, 4, 5)
    return _conv(space_to_depth(_pad1(x)), blocks.reshape(2, 2, 4 * i, o), 1, 0)


def downsample_by_taps(x, kernel):
    """Conv(4, 2, 1) of a few input channels as a sum of 16 * C_in broadcast products of
    strided input windows and kernel rows; summed in float32."""
    padded = _pad1(x)
    out_h, out_w = (x.shape[1] - 2) // 2 + 1, (x.shape[2] - 2) // 2 + 1
    kernel = kernel.astype(jnp.float32)
    out = None
    for kh in range(4):
        for kw in range(4):
            window = padded[:, kh:kh + 2 * out_h - 1:2, kw:kw + 2 * out_w - 1:2]
            for c in range(x.shape[-1]):
                term = window[..., c:c + 1].astype(jnp.float32) * kernel[kh, kw, c]
                out = term if out is None else out + term
    return out.astype(x.dtype)


def upsample_by_s2d(x, kernel):
    """ConvTranspose(4, 2, 1) as one 2x2 stride-1 convolution of the padded input into the
    four output phases as channels, then depth-to-space, cropped by one. Block row u of
    phase a reads input rows u - 1 and u through kernel rows 1 - a and 3 - a."""
    i, o = kernel.shape[2:]
    taps = kernel.reshape(2, 2, 2, 2, i, o)[:, ::-1][:, :, :, ::-1]  # [t, a, t', b, I, O]
    taps = taps.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, i, 4 * o)
    return depth_to_space(_conv(_pad1(x), taps, 1, 0))[:, 1:-1, 1:-1]


def interleave_phases(phase):
    """[N, 2H, 2W, O] whose pixel (2i + a, 2j + b) is `phase(a, b)`[:, i, j] ([N, H, W, O])."""
    rows = [jnp.stack([phase(a, b) for b in (0, 1)], axis=3) for a in (0, 1)]
    out = jnp.stack(rows, axis=2)  # [N, H, 2(a), W, 2(b), O]
    n, h, _, w, _, o = out.shape
    return out.reshape(n, 2 * h, 2 * w, o)


# Output row 2i + a of the dilated convolution reads input rows i - 1 + a and i + a
# through kernel rows a and a + 2: a 2-tap convolution padded on one side.
_PHASE_TAPS = {0: ((0, 2), (1, 0)), 1: ((1, 3), (0, 1))}  # phase: (kernel rows, padding)


def upsample_by_phases(x, kernel):
    """ConvTranspose(4, 2, 1) as four 2x2 stride-1 convolutions interleaved into the doubled
    grid: no products with inserted zeros."""
    def phase(a, b):
        (taps_y, pad_y), (taps_x, pad_x) = _PHASE_TAPS[a], _PHASE_TAPS[b]
        sub = kernel[jnp.array(taps_y)][:, jnp.array(taps_x)]  # [2, 2, I, O]
        return kernels.convolve(x, sub, (1, 1), (pad_y, pad_x))

    return interleave_phases(phase)


def upsample_by_products(x, kernel):
    """ConvTranspose(4, 2, 1) as one matrix product of each input pixel with all 16 kernel
    taps, then per output phase a sum of four shifted tap planes (output row 2i + a reads
    input row i - 1 + a + t through kernel row a + 2t). Summed in float32."""
    n, h, w, i = x.shape
    o = kernel.shape[-1]
    taps = jnp.dot(x.reshape(-1, i), kernel.transpose(2, 0, 1, 3).reshape(i, 16 * o),
                   preferred_element_type=jnp.float32)
    taps = jnp.pad(taps.reshape(n, h, w, 4, 4, o), ((0, 0), (1, 1), (1, 1)) + ((0, 0),) * 3)

    def phase(a, b):
        return sum(taps[:, a + t:a + t + h, b + u:b + u + w, a + 2 * t, b + 2 * u]
                   for t in (0, 1) for u in (0, 1))

    return interleave_phases(phase).astype(x.dtype)


def _even(x):
    return x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0


def _downsample(x, kernel, evaluated=False):
    if evaluated and x.shape[-1] <= TAPS_DOWN_MAX_CHANNELS:
        return downsample_by_taps(x, kernel)
    if _even(x) and x.shape[-1] <= S2D_DOWN_MAX_CHANNELS:
        return downsample_by_s2d(x, kernel)
    return _conv(x, kernel, 2, 1)


def _upsample(x, kernel, evaluated=False):
    if evaluated and kernel.shape[-1] <= PRODUCTS_UP_MAX_CHANNELS:
        return upsample_by_products(x, kernel)
    limit = S2D_UP_INFERENCE_MAX_CHANNELS if evaluated else S2D_UP_MAX_CHANNELS
    if kernel.shape[-1] <= limit:
        return upsample_by_s2d(x, kernel)
    return upsample_by_phases(x, kernel)


@jax.custom_vjp
def downsample(x, kernel):
    """Conv 4x4, stride 2, padding 1; its input gradient is the adjoint upsampling."""
    return _downsample(x, kernel, evaluated=True)  # the primal runs only when not differentiated


def _downsample_forward(x, kernel):
    return _downsample(x, kernel), (x, kernel)


def _downsample_backward(residuals, grad):
    x, kernel = residuals
    if not _even(x):  # the adjoint upsampling would miss the last row or column
        return jax.vjp(lambda x, k: _conv(x, k, 2, 1), x, kernel)[1](grad)
    grad_kernel = jax.vjp(lambda k: _downsample(x, k), kernel)[1](grad)[0]
    return _upsample(grad, _flip_io(kernel)), grad_kernel


downsample.defvjp(_downsample_forward, _downsample_backward)


@jax.custom_vjp
def upsample(x, kernel):
    """ConvTranspose 4x4, stride 2, padding 1; its input gradient is the adjoint
    downsampling."""
    return _upsample(x, kernel, evaluated=True)  # the primal runs only when not differentiated


def _upsample_forward(x, kernel):
    return _upsample(x, kernel), (x, kernel)


def _upsample_backward(residuals, grad):
    x, kernel = residuals
    grad_kernel = jax.vjp(lambda k: _upsample(x, k), kernel)[1](grad)[0]
    return _downsample(grad, _flip_io(kernel)), grad_kernel


upsample.defvjp(_upsample_forward, _upsample_backward)


def _rows_sum(weights, values):
    """Sum over all axes but the last with row b weighted by `weights[b]`: a matrix product
    over the batch, then a sum over positions (HIGHEST: full float32 everywhere)."""
    per_position = jnp.dot(weights, values.reshape(values.shape[0], -1),
                           precision=lax.Precision.HIGHEST)
    return jnp.sum(per_position.reshape(-1, values.shape[-1]), axis=0)


def _psum(value, axis_name):
    return value if axis_name is None else lax.psum(value, axis_name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def batch_norm(x, weights, scale, bias, axis_name=None):
    """`kernels.batch_norm_statistics` by matrix products, with a closed-form backward pass."""
    return _batch_norm_forward(x, weights, scale, bias, axis_name)[0]


def _batch_norm_forward(x, weights, scale, bias, axis_name):
    xf = x.astype(jnp.float32)
    count = _psum(jnp.sum(weights) * math.prod(x.shape[1:-1]), axis_name)
    mean = _psum(_rows_sum(weights, xf), axis_name) / count
    centred = xf - mean
    var = _psum(_rows_sum(weights, jnp.square(centred)), axis_name) / count
    rstd = lax.rsqrt(var + kernels.BN_EPSILON)
    y = (centred * (rstd * scale) + bias).astype(x.dtype)
    return (y, mean, var, count), (x, weights, scale, mean, rstd, count)


def _batch_norm_backward(axis_name, residuals, cotangents):
    x, weights, scale, mean, rstd, count = residuals
    grad_y, grad_mean, grad_var, _ = cotangents
    normalised = (x.astype(jnp.float32) - mean) * rstd
    grad_y = grad_y.astype(jnp.float32)
    ones = jnp.ones_like(weights)
    grad_bias = _rows_sum(ones, grad_y)  # this device's rows, as autodiff gives
    grad_scale = _rows_sum(ones, grad_y * normalised)
    total_mean = grad_mean - rstd * scale * _psum(grad_bias, axis_name)
    total_var = grad_var - 0.5 * rstd * rstd * scale * _psum(grad_scale, axis_name)
    row = weights.reshape((-1,) + (1,) * (x.ndim - 1)) / count
    grad_x = (grad_y * (rstd * scale) + row * total_mean
              + row * (2.0 / rstd) * normalised * total_var)
    return grad_x.astype(x.dtype), jnp.zeros_like(weights), grad_scale, grad_bias


batch_norm.defvjp(_batch_norm_forward, _batch_norm_backward)


def relu(x):
    """max(x, 0) with relu's gradient (0 at 0), NaN kept, written as a select."""
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


CPU = kernels.Kernels(downsample=downsample, upsample=upsample, batch_norm=batch_norm,
                     relu=relu)
