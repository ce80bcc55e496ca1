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

from ae4ad_jax import rate
from ae4ad_jax.kernels import BN_EPSILON, XLA, Kernels, batch_norm_statistics, convolve

BN_MOMENTUM = 0.9  # Flax convention: running = m * running + (1 - m) * batch (torch: 0.1)
DOWNSAMPLE_FACTOR = 16  # four stride-2 blocks: image sizes are multiples of this
# The layers whose shapes depend on d (by name prefix), and MemAE's memory [slots, d];
# every variable of a LATENT_UNITS module has the latent unit as its last axis.
LATENT_OUT, LATENT_IN, MEMORY = "to_latent", "from_latent", "memory"
LATENT_UNITS = "latent_units"


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


class Memory(nn.Module):
    """MemAE's memory (Gong et al. 2019): `slots` learned codes; each code is replaced by an
    attention-weighted sum of slots, the attention hard-shrunk below `shrink_threshold`
    and L1-renormalised. Returns (z_hat [B, d], attention [B, slots])."""

    slots: int = 25
    shrink_threshold: float = 0.0025

    @nn.compact
    def __call__(self, z):
        d = z.shape[-1]
        bound = 1.0 / jnp.sqrt(d)
        memory = self.param(MEMORY, lambda rng, shape: jax.random.uniform(
            rng, shape, jnp.float32, -bound, bound), (self.slots, d)).astype(z.dtype)
        attention = jax.nn.softmax(z @ memory.T, axis=-1)
        if self.shrink_threshold > 0:
            attention = shrink_attention(attention, self.shrink_threshold)
        return attention @ memory, attention


def shrink_attention(attention, threshold, epsilon=1e-12):
    """MemAE's ReLU hard shrinkage (weights below `threshold` become 0), then L1-normalised."""
    shifted = attention - threshold
    shrunk = jax.nn.relu(shifted) * attention / (jnp.abs(shifted) + epsilon)
    return shrunk / jnp.maximum(jnp.sum(jnp.abs(shrunk), -1, keepdims=True), epsilon)


def gaussian_noise(row_keys, width: int):
    """Standard normal noise [B, width]: unit j of row b from key (row_keys[b], j), so a
    row's noise depends neither on the batch it sits in nor on the width (ensembles)."""
    def row(key):
        return jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j)))(
            jnp.arange(width))

    return jax.vmap(row)(row_keys)


class Bottleneck(nn.Module):
    """Fully connected (1x1 convs if `spatial`) bottleneck; returns (features, code), code a
    dict with `z`, its normalised form `z_norm` and what the `latent` kind adds: "plain"
    (the AE), "gaussian" (the VAE: `mu` and `log_var`, z sampled with one key per row),
    "memory" (MemAE: `z_hat`, `att`). `latent_mask` ([d], 1 for active units) zeroes an
    ensemble member's units beyond its d.

    `z_norm` is z standardised per unit (`LatentNorm`: batch statistics in training,
    running statistics at evaluation): its scale is fixed by the model, not by the
    free scale of z, so entropies measured on it compare across members. Unless `rate_step`
    is set it only observes: the decoder reads z, as in the reference. With
    `rate_step` (plain latent only) the decoder reads z_norm quantised with that step
    (`rate.py`), and the code adds `bits` [B], its rate under the learned density
    (gradients to the encoder only), and `density_bits` (the same value, gradients to
    the density only)."""

    latent_size: int
    hidden_width: int = 1024
    spatial: bool = False
    latent: str = "plain"
    memory_slots: int = 25
    shrink_threshold: float = 0.0025
    rate_step: float = 0.0
    rate_filters: tuple = (3, 3, 3)
    rate_init_scale: float = 10.0
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None):
        def layer(features, name):
            return Conv(features, 1, name=name) if self.spatial else Dense(features, name=name)

        def bn_relu(y):
            return self.kernels.relu(BatchNorm(self.axis_name, self.kernels)(y, train, mask))

        def masked(v):
            return v if latent_mask is None else v * latent_mask

        shape = x.shape
        x = x if self.spatial else x.reshape(shape[0], -1)
        h = bn_relu(layer(self.hidden_width, "encode_hidden")(x))
        z = masked(layer(self.latent_size, LATENT_OUT)(h))
        normalise = LatentNorm(self.axis_name, name=LATENT_UNITS + "_norm")
        code = {"z": z, "z_norm": masked(normalise(z, train, mask, latent_mask))}
        if self.latent == "gaussian":
            log_var = masked(layer(self.latent_size, LATENT_OUT + "_log_var")(h))
            if row_keys is None:
                raise ValueError("A Gaussian latent samples z: pass row_keys.")
            eps = gaussian_noise(row_keys, z.shape[-1]).astype(z.dtype)
            code.update(mu=z, log_var=log_var)
            z = masked(z + eps * jnp.exp(0.5 * log_var))
        elif self.latent == "memory":
            z_hat, attention = Memory(self.memory_slots, self.shrink_threshold)(z)
            code.update(z_hat=masked(z_hat), att=attention)
            z = code["z_hat"]
        elif self.rate_step > 0:
            z = masked(self._quantise(code, train, row_keys, masked))
        h = bn_relu(layer(self.hidden_width, LATENT_IN)(z))
        return layer(x.shape[-1], "decode_features")(h).reshape(shape), code

    def _quantise(self, code, train, row_keys, masked):
        """The quantised normalised code (in z_norm's units); adds the rates to `code`."""
        q = rate.quantise(code["z_norm"] / self.rate_step, train, row_keys)  # in steps
        density = rate.FactorizedDensity(self.rate_filters, self.rate_init_scale,
                                         name=LATENT_UNITS + "_rate")

        def per_row(bits):
            return jnp.sum(masked(bits).reshape(bits.shape[0], -1), axis=1)

        code["bits"] = per_row(density(q, stop_params=True))
        code["density_bits"] = per_row(density(lax.stop_gradient(q)))
        code["z_quantised"] = masked(q * self.rate_step)
        return code["z_quantised"]


class AutoEncoder(nn.Module):
    """The benchmark's AE and the variants that change only its bottleneck or its output.

    Returns `{'recon': [B, H, W, C], 'z': [B, d] (or [B, h, w, d]), 'z_norm'}` (z
    standardised, see `Bottleneck`; with `rate_step` also the rates) and, by variant:
    `latent` "gaussian" (VAE) or "memory" (MemAE) adds that code's parts; `log_variance`
    (AE-U) doubles the last block's channels into `recon` and a per-pixel `log_var`;
    `reencode` (Constrained AE) adds, in training, `z_rec`: the code of the
    reconstruction through the same encoder (its BatchNorms update twice, as in the
    reference).
    """

    latent_size: int = 16
    channels: int = 1
    base_width: int = 16
    expansion: int = 1
    hidden_width: int = 1024
    encoder_depth: int = 1
    decoder_depth: int = 1
    spatial: bool = False
    latent: str = "plain"
    memory_slots: int = 25
    shrink_threshold: float = 0.0025
    log_variance: bool = False
    reencode: bool = False
    rate_step: float = 0.0  # > 0: the decoder reads the quantised code, `bits` is its rate
    rate_filters: tuple = (3, 3, 3)
    rate_init_scale: float = 10.0
    axis_name: str | None = None
    kernels: Kernels = XLA
    dtype: Any = jnp.float32  # of activations; parameters and outputs stay float32

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None):
        x = x.astype(self.dtype)
        if latent_mask is not None:
            latent_mask = latent_mask.astype(self.dtype)
        width = self.base_width * self.expansion
        block = dict(axis_name=self.axis_name, kernels=self.kernels)
        encoder = [ConvBlock(f, self.encoder_depth, **block)
                   for f in (width, 2 * width, 4 * width, 4 * width)]
        bottleneck = Bottleneck(self.latent_size, self.hidden_width, self.spatial, self.latent,
                                self.memory_slots, self.shrink_threshold, self.rate_step,
                                self.rate_filters, self.rate_init_scale, **block)

        def encode(y):
            for layer in encoder:
                y = layer(y, train, mask)
            return y

        h, code = bottleneck(encode(x), train, mask, latent_mask, row_keys)
        out_channels = self.channels * (2 if self.log_variance else 1)
        for i, features in enumerate((4 * width, 2 * width, width, out_channels)):
            h = ConvBlock(features, self.decoder_depth, upsample=True, last=i == 3,
                          **block)(h, train, mask)
        outputs = {name: value.astype(jnp.float32) for name, value in code.items()}
        outputs["recon"] = h[..., :self.channels].astype(jnp.float32)
        if self.log_variance:
            outputs["log_var"] = h[..., self.channels:].astype(jnp.float32)
        if self.reencode and train:
            _, code_rec = bottleneck(encode(h[..., :self.channels]), train, mask, latent_mask,
                                     row_keys)
            outputs["z_rec"] = code_rec["z"].astype(jnp.float32)
        return outputs


def count_params(params) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not params)."""
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
