"""The DAE's U-Net (Kascenas et al. 2022, as in the benchmark) with PyTorch's default
initialisation; tensors are NHWC."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae4ad_jax.nets.kernels import convolve
from ae4ad_jax.nets.layers import torch_bias_init, torch_kernel_init


def group_count(channels: int) -> int:
    """The reference U-Net's GroupNorm groups: the middle divisor of `channels`."""
    divisors = sorted({d for i in range(1, int(channels ** 0.5) + 1) if channels % i == 0
                       for d in (i, channels // i)})
    return divisors[len(divisors) // 2]


class StandardizedConv(nn.Module):
    """Conv 3x3 with bias on a reflection-padded input, its kernel weight-standardised per
    output channel (mean 0, unbiased std + 1e-5), as the reference's WNConv2d."""

    features: int

    @nn.compact
    def __call__(self, x):
        fan_in = 9 * x.shape[-1]
        kernel = self.param("kernel", torch_kernel_init(), (3, 3, x.shape[-1],
                                                                   self.features))
        bias = self.param("bias", torch_bias_init(fan_in), (self.features,))
        kernel = kernel - jnp.mean(kernel, axis=(0, 1, 2))
        kernel = kernel / (jnp.std(kernel, axis=(0, 1, 2), ddof=1) + 1e-5)
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        return convolve(x, kernel.astype(x.dtype), (1, 1), ((0, 0), (0, 0))) + bias


class UNetBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = jax.nn.silu(StandardizedConv(self.features)(x))
            x = nn.GroupNorm(num_groups=group_count(self.features), epsilon=1e-5,
                             use_fast_variance=False)(x)
        return x


class UpConv(nn.Module):
    """torch ConvTranspose2d(kernel 2, stride 2) with bias: each pixel becomes a 2x2 block."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", torch_kernel_init(in_axis=-1, out_axis=-2),
                            (2, 2, x.shape[-1], self.features))
        bias = self.param("bias", torch_bias_init(4 * self.features), (self.features,))
        b, h, w, _ = x.shape
        y = jnp.einsum("bhwc,ijco->bhiwjo", x, kernel.astype(x.dtype))
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias


class UNet(nn.Module):
    """The DAE's U-Net (Kascenas et al. 2022, as in the benchmark): `depth` levels of two
    weight-standardised convs with Swish and GroupNorm, average pooling down, transposed
    convs up with skip connections, a 1x1 conv out. Widths 2**width_log2 doubling."""

    channels: int
    depth: int
    width_log2: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None, latent_mask=None, row_keys=None):
        del train, mask, latent_mask, row_keys
        x = x.astype(self.dtype)
        skips = []
        for level in range(self.depth):
            x = UNetBlock(2 ** (self.width_log2 + level))(x)
            skips.append(x)
            if level < self.depth - 1:
                x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        for level in reversed(range(self.depth - 1)):
            features = 2 ** (self.width_log2 + level)
            x = jnp.concatenate([UpConv(features)(x), skips[level]], axis=-1)
            x = UNetBlock(features)(x)
        fan_in = x.shape[-1]
        kernel = self.param("out_kernel", torch_kernel_init(),
                            (1, 1, fan_in, self.channels))
        bias = self.param("out_bias", torch_bias_init(fan_in), (self.channels,))
        recon = convolve(x, kernel.astype(x.dtype), (1, 1), ((0, 0), (0, 0))) + bias
        return {"recon": recon.astype(jnp.float32)}
