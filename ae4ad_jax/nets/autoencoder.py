"""The MedIAnomaly benchmark's autoencoder as Flax linen modules, and its architecture.

`Architecture` declares the settings of config group `model` (the reference's
values); the AE, GANomaly and the DAE's U-Net read them from it. Tensors are
NHWC: `[B, H, W, C]`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ae4ad_jax.core.settings import setting
from ae4ad_jax.nets import rate as rate_lib
from ae4ad_jax.nets.kernels import XLA, Kernels
from ae4ad_jax.nets.layers import (
    LATENT_IN,
    LATENT_OUT,
    LATENT_UNITS,
    MEMORY,
    BatchNorm,
    Conv,
    ConvBlock,
    Dense,
    LatentNorm,
    in_dtype,
)

COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The networks' shape and arithmetic (config group `model`)."""

    base_width: int = setting(16, "channels of the first conv block", low=1)
    expansion: int = setting(1, "multiplier of every block's channels", low=1)
    hidden_width: int = setting(1024, "width of the fully connected bottleneck", low=1)
    encoder_depth: int = setting(1, "convs per encoder block", low=1)
    decoder_depth: int = setting(1, "convs per decoder block", low=1)
    spatial: bool = setting(False, "1x1-conv bottleneck (a 4x4xd code)")
    compute_dtype: str = setting(
        "float32", "dtype of activations and products ('bfloat16' on GPUs and TPUs); "
        "parameters, optimiser state, BatchNorm statistics and the loss stay float32",
        choices=COMPUTE_DTYPES)

    @property
    def dtype(self):
        return jnp.dtype(self.compute_dtype)

    def widths(self) -> tuple:
        """Channels of the four encoder blocks (the decoder's, reversed)."""
        width = self.base_width * self.expansion
        return (width, 2 * width, 4 * width, 4 * width)


class Memory(nn.Module):
    """MemAE's memory (Gong et al. 2019): `slots` learned codes; each code is replaced by an
    attention-weighted sum of slots, the attention hard-shrunk below `shrink_threshold`
    and L1-renormalised. Returns (z_hat [B, d], attention [B, slots])."""

    slots: int
    shrink_threshold: float

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
    free scale of z, so entropies measured on it compare across members. Unless `rate`
    is given it only observes: the decoder reads z, as in the reference. With `rate`
    (plain latent only) the decoder reads z_norm quantised with step `rate.step`
    (`rate.py`), and the code adds `bits` [B], its rate under the learned density
    (gradients to the encoder only), and `density_bits` (the same value, gradients to
    the density only)."""

    latent_size: int
    hidden_width: int
    spatial: bool
    latent: str = "plain"
    memory_slots: int = 0  # latent "memory": MemAE's slots and shrinkage threshold
    shrink_threshold: float = 0.0
    rate: rate_lib.Rate | None = None
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None,
                 noise=None):
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
            if noise is None and row_keys is None:
                raise ValueError("A Gaussian latent samples z: pass row_keys (or noise).")
            eps = (gaussian_noise(row_keys, z.shape[-1]) if noise is None else noise).astype(
                z.dtype)
            code.update(mu=z, log_var=log_var)
            z = masked(z + eps * jnp.exp(0.5 * log_var))
        elif self.latent == "memory":
            z_hat, attention = Memory(self.memory_slots, self.shrink_threshold)(z)
            code.update(z_hat=masked(z_hat), att=attention)
            z = code["z_hat"]
        elif self.rate is not None:
            z = masked(self._quantise(code, train, row_keys, masked))
        h = bn_relu(layer(self.hidden_width, LATENT_IN)(z))
        return layer(x.shape[-1], "decode_features")(h).reshape(shape), code

    def _quantise(self, code, train, row_keys, masked):
        """The quantised normalised code (in z_norm's units); adds the rates to `code`."""
        step = self.rate.step
        q = rate_lib.quantise(code["z_norm"] / step, train, row_keys)  # in steps
        density = rate_lib.FactorizedDensity(self.rate.filters, self.rate.init_scale,
                                             name=LATENT_UNITS + "_rate")

        def per_row(bits):
            return jnp.sum(masked(bits).reshape(bits.shape[0], -1), axis=1)

        code["bits"] = per_row(density(q, stop_params=True))
        code["density_bits"] = per_row(density(lax.stop_gradient(q)))
        code["z_quantised"] = masked(q * step)
        return code["z_quantised"]


class AutoEncoder(nn.Module):
    """The benchmark's AE and the variants that change only its bottleneck or its output.

    Returns `{'recon': [B, H, W, C], 'z': [B, d] (or [B, h, w, d]), 'z_norm'}` (z
    standardised, see `Bottleneck`; with `rate` also the rates) and, by variant:
    `latent` "gaussian" (VAE) or "memory" (MemAE) adds that code's parts; `log_variance`
    (AE-U) doubles the last block's channels into `recon` and a per-pixel `log_var`;
    `reencode` (Constrained AE) adds, in training, `z_rec`: the code of the
    reconstruction through the same encoder (its BatchNorms update twice, as in the
    reference).
    """

    latent_size: int
    channels: int
    architecture: Architecture = Architecture()
    latent: str = "plain"
    memory_slots: int = 0
    shrink_threshold: float = 0.0
    log_variance: bool = False
    reencode: bool = False
    rate: rate_lib.Rate | None = None  # the decoder reads the quantised code; `bits`
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None,
                 noise=None):
        arch = self.architecture
        x, latent_mask = in_dtype(arch.dtype, x, latent_mask)
        widths = arch.widths()
        block = dict(axis_name=self.axis_name, kernels=self.kernels)
        encoder = [ConvBlock(f, arch.encoder_depth, **block) for f in widths]
        bottleneck = Bottleneck(self.latent_size, arch.hidden_width, arch.spatial, self.latent,
                                self.memory_slots, self.shrink_threshold, self.rate, **block)

        def encode(y):
            for layer in encoder:
                y = layer(y, train, mask)
            return y

        h, code = bottleneck(encode(x), train, mask, latent_mask, row_keys, noise)
        out_channels = self.channels * (2 if self.log_variance else 1)
        for i, features in enumerate(widths[-2::-1] + (out_channels,)):  # 4w, 2w, w, C
            h = ConvBlock(features, arch.decoder_depth, upsample=True, last=i == 3,
                          **block)(h, train, mask)
        outputs = {name: value.astype(jnp.float32) for name, value in code.items()}
        outputs["recon"] = h[..., :self.channels].astype(jnp.float32)
        if self.log_variance:
            outputs["log_var"] = h[..., self.channels:].astype(jnp.float32)
        if self.reencode and train:
            _, code_rec = bottleneck(encode(h[..., :self.channels]), train, mask, latent_mask,
                                     row_keys, noise)
            outputs["z_rec"] = code_rec["z"].astype(jnp.float32)
        return outputs

