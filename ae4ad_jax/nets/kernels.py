"""How the AE's layers compute: the `Kernels` contract and XLA's own forms, `XLA`.

`XLA` uses XLA's own convolutions and reductions (cuDNN on GPUs, the TPU
emitter) and is the reference that `cpu_kernels.CPU` is tested against.
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

BN_EPSILON = 1e-5


def convolve(x, kernel, strides, padding, lhs_dilation=None):
    """NHWC/HWIO convolution summed in float32, returned in the input's dtype."""
    y = lax.conv_general_dilated(x, kernel, strides, padding, lhs_dilation=lhs_dilation,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 preferred_element_type=jnp.float32)
    return y.astype(x.dtype)


def batch_norm_statistics(x, weights, scale, bias, axis_name=None):
    """Training-mode BatchNorm of `x` [B, ..., C] over its rows of weight 1 (`weights` [B]).

    Returns (y, mean, biased variance, count); sums are pooled over `axis_name`.
    """
    def total(value):
        return value if axis_name is None else lax.psum(value, axis_name)

    xf = x.astype(jnp.float32)
    rows = weights.reshape((-1,) + (1,) * (x.ndim - 1))
    axes = tuple(range(x.ndim - 1))
    count = total(jnp.sum(weights) * math.prod(x.shape[1:-1]))
    mean = total(jnp.sum(rows * xf, axes)) / count
    var = total(jnp.sum(rows * jnp.square(xf - mean), axes)) / count
    y = (xf - mean) * (lax.rsqrt(var + BN_EPSILON) * scale) + bias
    return y.astype(x.dtype), mean, var, count


@dataclasses.dataclass(frozen=True)
class Kernels:
    """How the layers compute; every choice is the same function (values and gradients)."""

    downsample: Callable  # Conv 4x4, stride 2, padding 1: (x, kernel) -> y
    upsample: Callable  # ConvTranspose 4x4, stride 2, padding 1: (x, dilated-conv kernel) -> y
    batch_norm: Callable  # (x, weights, scale, bias, axis_name) -> (y, mean, var, count)
    relu: Callable


XLA = Kernels(
    downsample=lambda x, kernel: convolve(x, kernel, (2, 2), ((1, 1), (1, 1))),
    upsample=lambda x, kernel: convolve(x, kernel, (1, 1), ((2, 2), (2, 2)), (2, 2)),
    batch_norm=batch_norm_statistics, relu=jax.nn.relu)
