"""The MedIAnomaly benchmark's autoencoder as Flax linen modules.

What PyTorch does by default and the reference relies on (weight
initialisation, BatchNorm statistics, ConvTranspose2d geometry) is reproduced
here, so that results compare with the paper. Tensors are NHWC: `[B, H, W, C]`.
The resampling convolutions, BatchNorm's statistics and ReLU are computed by a
`kernels.Kernels` choice (XLA's own by default); every choice is the same function.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ae4ad_jax.kernels import BN_EPSILON, XLA, Kernels, convolve

BN_MOMENTUM = 0.9  # Flax convention: running = m * running + (1 - m) * batch (torch: 0.1)
DOWNSAMPLE_FACTOR = 16  # four stride-2 blocks: image sizes are multiples of this
LATENT_OUT, LATENT_IN = "to_latent", "from_latent"  # the layers whose shapes depend on d


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
        if not self.is_initializing():
            unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
            running_mean.value = BN_MOMENTUM * running_mean.value + (1 - BN_MOMENTUM) * mean
            running_var.value = BN_MOMENTUM * running_var.value + (1 - BN_MOMENTUM) * unbiased
        return y


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


class Bottleneck(nn.Module):
    """Fully connected (1x1 convs if `spatial`) bottleneck; returns (features, z). `latent_mask`
    ([d], 1 for active units) zeroes an ensemble member's units beyond its own d."""

    latent_size: int
    hidden_width: int = 1024
    spatial: bool = False
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None):  # x: [B, h, w, C]
        def layer(features, name):
            return Conv(features, 1, name=name) if self.spatial else Dense(features, name=name)

        def bn_relu(y):
            return self.kernels.relu(BatchNorm(self.axis_name, self.kernels)(y, train, mask))

        shape = x.shape
        x = x if self.spatial else x.reshape(shape[0], -1)
        h = bn_relu(layer(self.hidden_width, "encode_hidden")(x))
        z = layer(self.latent_size, LATENT_OUT)(h)
        if latent_mask is not None:
            z = z * latent_mask
        h = bn_relu(layer(self.hidden_width, LATENT_IN)(z))
        return layer(x.shape[-1], "decode_features")(h).reshape(shape), z


class AutoEncoder(nn.Module):
    """The benchmark's AE. Returns `{'recon': [B, H, W, C], 'z': [B, d] (or [B, h, w, d])}`."""

    latent_size: int = 16
    channels: int = 1
    base_width: int = 16
    expansion: int = 1
    hidden_width: int = 1024
    encoder_depth: int = 1
    decoder_depth: int = 1
    spatial: bool = False
    axis_name: str | None = None
    kernels: Kernels = XLA
    dtype: Any = jnp.float32  # of activations; parameters and outputs stay float32

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None) -> dict[str, Any]:
        x = x.astype(self.dtype)
        if latent_mask is not None:
            latent_mask = latent_mask.astype(self.dtype)
        width = self.base_width * self.expansion
        block = dict(axis_name=self.axis_name, kernels=self.kernels)
        for features in (width, 2 * width, 4 * width, 4 * width):
            x = ConvBlock(features, self.encoder_depth, **block)(x, train, mask)
        x, z = Bottleneck(self.latent_size, self.hidden_width, self.spatial,
                          **block)(x, train, mask, latent_mask)
        for i, features in enumerate((4 * width, 2 * width, width, self.channels)):
            x = ConvBlock(features, self.decoder_depth, upsample=True, last=i == 3,
                          **block)(x, train, mask)
        return {"recon": x.astype(jnp.float32), "z": z.astype(jnp.float32)}


def count_params(params) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not params)."""
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
