"""GANomaly (Akcay et al. 2018) as in the benchmark, built from the AE's layers with PyTorch's
default initialisation; tensors are NHWC."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae4ad_jax.nets.autoencoder import Architecture
from ae4ad_jax.nets.kernels import XLA, Kernels
from ae4ad_jax.nets.layers import (
    DOWNSAMPLE_FACTOR,
    LATENT_IN,
    LATENT_OUT,
    ConvBlock,
    Dense,
    in_dtype,
)


def _stop_gradient(tree):
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


def _down_blocks(module, x, train, mask):
    """The AE encoder's four conv blocks, as submodules of `module` (its widths, depth)."""
    for features in module.widths:
        x = ConvBlock(features, module.depth, axis_name=module.axis_name,
                      kernels=module.kernels)(x, train, mask)
    return x.reshape(len(x), -1)


class GanEncoder(nn.Module):
    """GANomaly's encoder: the AE's four conv blocks, then Linear -> ReLU -> Linear(d)
    (no BatchNorm in the fully connected part). Returns z [B, d]."""

    latent_size: int
    widths: tuple
    hidden_width: int
    depth: int = 1
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None):
        h = jax.nn.relu(Dense(self.hidden_width, name="encode_hidden")(
            _down_blocks(self, x, train, mask)))
        z = Dense(self.latent_size, name=LATENT_OUT)(h)
        return z if latent_mask is None else z * latent_mask


class GanDecoder(nn.Module):
    """GANomaly's decoder: Linear(d) -> ReLU -> Linear, then the AE's four up blocks."""

    widths: tuple
    channels: int
    hidden_width: int
    feature_size: int
    depth: int = 1
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, z, train: bool, mask=None):
        h = jax.nn.relu(Dense(self.hidden_width, name=LATENT_IN)(z))
        size, top = self.feature_size, self.widths[-1]
        h = Dense(top * size * size, name="decode_features")(h).reshape(len(z), size, size, top)
        up = tuple(reversed(self.widths[:-1])) + (self.channels,)  # 4w, 2w, w, C
        for i, features in enumerate(up):
            h = ConvBlock(features, self.depth, upsample=True, last=i == len(up) - 1,
                          axis_name=self.axis_name, kernels=self.kernels)(h, train, mask)
        return h


class Discriminator(nn.Module):
    """GANomaly's discriminator: the encoder's conv blocks, Linear -> ReLU (the features),
    Linear(1). Returns (logit [B], features [B, hidden])."""

    widths: tuple
    hidden_width: int
    depth: int = 1
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None):
        features = jax.nn.relu(Dense(self.hidden_width, name="features")(
            _down_blocks(self, x, train, mask)))
        return Dense(1, name="classifier")(features)[:, 0], features


class Ganomaly(nn.Module):
    """GANomaly (Akcay et al. 2018) as in the benchmark: a generator (encoder, decoder,
    second encoder) and a discriminator, all in one parameter tree.

    Outputs `recon`, `z`, `z_hat`; in training also what the two losses need: the
    discriminator's logit and features of the real images, its features of the
    reconstructions with its parameters frozen (the generator's adversarial term
    trains the generator only), and its logit of the detached reconstructions (the
    discriminator's term trains the discriminator only). With those stops, one
    gradient of the sum of both losses is the reference's two optimiser steps.
    """

    latent_size: int
    channels: int
    image_size: int
    architecture: Architecture = Architecture()
    axis_name: str | None = None
    kernels: Kernels = XLA

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None):
        del row_keys
        arch = self.architecture
        x, latent_mask = in_dtype(arch.dtype, x, latent_mask)
        widths = arch.widths()
        common = dict(axis_name=self.axis_name, kernels=self.kernels)
        encoder = dict(latent_size=self.latent_size, widths=widths,
                       hidden_width=arch.hidden_width, depth=arch.encoder_depth, **common)
        z = GanEncoder(name="encoder1", **encoder)(x, train, mask, latent_mask)
        recon = GanDecoder(widths, self.channels, arch.hidden_width,
                           self.image_size // DOWNSAMPLE_FACTOR, arch.decoder_depth,
                           name="decoder", **common)(z, train, mask)
        z_hat = GanEncoder(name="encoder2", **encoder)(recon, train, mask, latent_mask)
        outputs = {"recon": recon, "z": z, "z_hat": z_hat}
        discriminator = Discriminator(widths, arch.hidden_width, arch.decoder_depth,
                                      name="discriminator", **common)
        if train or self.is_initializing():
            frozen = nn.map_variables(lambda module, y: module(y, train, mask), "params",
                                      trans_in_fn=_stop_gradient, mutable=True)
            logit_real, features_real = discriminator(x, train, mask)
            _, features_fake = frozen(discriminator, recon)
            logit_fake, _ = discriminator(jax.lax.stop_gradient(recon), train, mask)
            # The generator's term reads the real features as a target: no gradient to D.
            features_real = jax.lax.stop_gradient(features_real)
            outputs.update(logit_real=logit_real, features_real=features_real,
                           features_fake=features_fake, logit_fake=logit_fake)
        return {k: v.astype(jnp.float32) for k, v in outputs.items()}
