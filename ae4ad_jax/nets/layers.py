"""The layers every network here is built from, with PyTorch's defaults that the reference
relies on: weight initialisation, BatchNorm statistics, ConvTranspose2d geometry.

Tensors are NHWC: `[B, H, W, C]`. The resampling convolutions, BatchNorm's
statistics and ReLU are computed by a `kernels.Kernels` choice (XLA's own by
default); every choice is the same function.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ae4ad_jax.nets.kernels import BN_EPSILON, XLA, Kernels, batch_norm_statistics, convolve

BN_MOMENTUM = 0.9  # Flax convention: running = m * running + (1 - m) * batch (torch: 0.1)
DOWNSAMPLE_FACTOR = 16  # four stride-2 blocks: image sizes are multiples of this
# The layers whose shapes depend on d (by name prefix), and MemAE's memory [slots, d];
# every variable of a LATENT_UNITS module has the latent unit as its last axis.
LATENT_OUT, LATENT_IN, MEMORY = "to_latent", "from_latent", "memory"
LATENT_UNITS = "latent_units"


def in_dtype(dtype, *arrays):
    """`arrays` in the compute dtype (None stays None)."""
    return [None if a is None else a.astype(dtype) for a in arrays]


def torch_kernel_init(in_axis=-2, out_axis=-1):
    """PyTorch's kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform",
                                            in_axis=in_axis, out_axis=out_axis)


def torch_bias_init(fan_in: int):
    """PyTorch's Linear bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / jnp.sqrt(fan_in)
    return lambda rng, shape, dtype=jnp.float32: jax.random.uniform(rng, shape, dtype,
                                                                    -bound, bound)


class Dense(nn.Module):
    """torch.nn.Linear; float32 parameters, computed in the input's dtype."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, kernel_init=torch_kernel_init(), dtype=x.dtype,
                        bias_init=torch_bias_init(x.shape[-1]))(x)


class Conv(nn.Module):
    """torch.nn.Conv2d without bias (square kernel, symmetric padding)."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x):
        k, s, p = self.kernel_size, self.stride, self.padding
        kernel = self.param("kernel", torch_kernel_init(),
                            (k, k, x.shape[-1], self.features)).astype(x.dtype)
        if (k, s, p) == (4, 2, 1):
            return self.kernels.downsample(x, kernel)
        return convolve(x, kernel, (s, s), ((p, p), (p, p)))


class ConvTranspose(nn.Module):
    """torch.nn.ConvTranspose2d(4, stride=2, padding=1) without bias. The kernel is that of
    the equivalent convolution over the 2-dilated input padded by 2: torch's weight
    `W[i, o, a, b]` is `kernel[3 - a, 3 - b, i, o]`. PyTorch takes a transposed
    convolution's fan-in from its output channels, hence `in_axis=-1`."""

    features: int
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", torch_kernel_init(in_axis=-1, out_axis=-2),
                            (4, 4, x.shape[-1], self.features)).astype(x.dtype)
        return self.kernels.upsample(x, kernel)


class BatchNorm(nn.Module):
    """torch BatchNorm1d/2d over all axes but the last: the biased batch variance normalises,
    the unbiased one updates the running variance. `mask` ([B], 0 for padding rows) keeps
    padding out of the statistics; with `axis_name` they are pooled across devices."""

    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None):
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        if not train:
            inv = lax.rsqrt(running_var.value + BN_EPSILON) * scale
            return ((x - running_mean.value) * inv + bias).astype(x.dtype)
        weights = (jnp.ones(x.shape[:1]) if mask is None else mask).astype(jnp.float32)
        y, mean, var, count = self.kernels.batch_norm(x, weights, scale, bias, self.axis_name)
        # Batch statistics without updates: GANomaly's test-time forward (train mode, frozen).
        if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
            unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
            running_mean.value = BN_MOMENTUM * running_mean.value + (1 - BN_MOMENTUM) * mean
            running_var.value = BN_MOMENTUM * running_var.value + (1 - BN_MOMENTUM) * unbiased
        return y


LATENT_NORM_FLOOR = 1e-5  # of the mean variance of the active units


class LatentNorm(nn.Module):
    """Standardises each latent unit of z [B, ..., d] by its running statistics (no
    parameters; BatchNorm's momentum), in training and at evaluation alike, so the code
    a decoder and a rate model are trained on is the code they get at evaluation. In
    training the running statistics first take in the batch's (padding rows out, pooled
    over `axis_name`), and gradients flow as through a BatchNorm (batch
    renormalisation, Ioffe 2017): a unit cannot lower its normalised spread by shrinking.
    The variance floor is relative (LATENT_NORM_FLOOR times the mean variance of the
    active units), so the output does not change when z is scaled by any factor; a unit
    far quieter than the others reads as (nearly) off."""

    axis_name: str | None = None

    @nn.compact
    def __call__(self, z, train: bool, mask=None, latent_mask=None):
        units = z.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (units,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (units,), jnp.float32)
        active = jnp.ones((units,)) if latent_mask is None else latent_mask.astype(jnp.float32)

        def spread(var):  # the standard deviation with the relative floor
            floor = LATENT_NORM_FLOOR * jnp.sum(var * active) / jnp.maximum(jnp.sum(active), 1.)
            return jnp.sqrt(var + floor + 1e-30)

        zf = z.astype(jnp.float32)
        mean, var = running_mean.value, running_var.value
        if not train:
            return ((zf - mean) / spread(var)).astype(z.dtype)
        weights = (jnp.ones(z.shape[:1]) if mask is None else mask).astype(jnp.float32)
        _, batch_mean, batch_var, count = batch_norm_statistics(zf, weights, 1.0, 0.0,
                                                                self.axis_name)
        unbiased = batch_var * count / jnp.maximum(count - 1.0, 1.0)
        mean = BN_MOMENTUM * mean + (1 - BN_MOMENTUM) * lax.stop_gradient(batch_mean)
        var = BN_MOMENTUM * var + (1 - BN_MOMENTUM) * lax.stop_gradient(unbiased)
        if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
            running_mean.value, running_var.value = mean, var
        batch_spread = spread(batch_var)
        scale = lax.stop_gradient(batch_spread / spread(var))
        shift = lax.stop_gradient((batch_mean - mean) / spread(var))
        return ((zf - batch_mean) / batch_spread * scale + shift).astype(z.dtype)


class ConvBlock(nn.Module):
    """The reference's BasicBlock: a resampling conv and depth - 1 extra 3x3 convs, after
    the strided conv (down) or before the transposed one (up). `last` drops BN and ReLU."""

    features: int
    depth: int = 1
    upsample: bool = False
    last: bool = False
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None):
        def bn_relu(y):
            return self.kernels.relu(BatchNorm(self.axis_name, self.kernels)(y, train, mask))

        if not self.upsample:
            x = bn_relu(Conv(self.features, 4, 2, 1, self.kernels)(x))
            for _ in range(self.depth - 1):
                x = bn_relu(Conv(self.features, 3, padding=1)(x))
            return x
        for _ in range(self.depth - 1):
            x = bn_relu(Conv(x.shape[-1], 3, padding=1)(x))
        x = ConvTranspose(self.features, self.kernels)(x)
        return x if self.last else bn_relu(x)




def count_params(params) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not params)."""
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
