"""The benchmark's other networks as Flax linen modules: GANomaly, the DAE's U-Net, and
the perceptual AE (the AE with a frozen VGG19 feature extractor).

Like `models.py`, each reproduces the reference's layers and PyTorch's default
initialisation; tensors are NHWC.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae4ad_jax import models
from ae4ad_jax.kernels import XLA, Kernels, convolve
from ae4ad_jax.models import LATENT_IN, LATENT_OUT, ConvBlock, Dense


def _stop_gradient(tree):
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


# ----------------------------------------------------------------------------- GANomaly


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

    latent_size: int = 16
    channels: int = 1
    image_size: int = 64
    base_width: int = 16
    expansion: int = 1
    hidden_width: int = 1024
    encoder_depth: int = 1
    decoder_depth: int = 1
    axis_name: str | None = None
    kernels: Kernels = XLA
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None):
        del row_keys
        x = x.astype(self.dtype)
        if latent_mask is not None:
            latent_mask = latent_mask.astype(self.dtype)
        w = self.base_width * self.expansion
        widths = (w, 2 * w, 4 * w, 4 * w)
        common = dict(axis_name=self.axis_name, kernels=self.kernels)
        encoder = dict(latent_size=self.latent_size, widths=widths,
                       hidden_width=self.hidden_width, depth=self.encoder_depth, **common)
        z = GanEncoder(name="encoder1", **encoder)(x, train, mask, latent_mask)
        recon = GanDecoder(widths, self.channels, self.hidden_width,
                           self.image_size // models.DOWNSAMPLE_FACTOR, self.decoder_depth,
                           name="decoder", **common)(z, train, mask)
        z_hat = GanEncoder(name="encoder2", **encoder)(recon, train, mask, latent_mask)
        outputs = {"recon": recon, "z": z, "z_hat": z_hat}
        discriminator = Discriminator(widths, self.hidden_width, self.decoder_depth,
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


# ----------------------------------------------------------------------------- DAE U-Net


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
        kernel = self.param("kernel", models.torch_kernel_init(), (3, 3, x.shape[-1],
                                                                   self.features))
        bias = self.param("bias", models.torch_bias_init(fan_in), (self.features,))
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
            x = nn.GroupNorm(num_groups=group_count(self.features), epsilon=1e-5)(x)
        return x


class UpConv(nn.Module):
    """torch ConvTranspose2d(kernel 2, stride 2) with bias: each pixel becomes a 2x2 block."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", models.torch_kernel_init(in_axis=-1, out_axis=-2),
                            (2, 2, x.shape[-1], self.features))
        bias = self.param("bias", models.torch_bias_init(4 * self.features), (self.features,))
        b, h, w, _ = x.shape
        y = jnp.einsum("bhwc,ijco->bhiwjo", x, kernel.astype(x.dtype))
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias


class UNet(nn.Module):
    """The DAE's U-Net (Kascenas et al. 2022, as in the benchmark): `depth` levels of two
    weight-standardised convs with Swish and GroupNorm, average pooling down, transposed
    convs up with skip connections, a 1x1 conv out. Widths 2**width_log2 doubling."""

    channels: int = 1
    depth: int = 5
    width_log2: int = 6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None, latent_mask=None, row_keys=None):
        del train, mask, latent_mask, row_keys
        x = x.astype(self.dtype)
        skips = []
        for level in range(self.depth):
            x = UNetBlock(2 ** (self.width_log2 + level))(x)
            skips.append(x)
            if level < self.depth - 1:
                x = nn.avg_pool(x, (2, 2), (2, 2))
        for level in reversed(range(self.depth - 1)):
            features = 2 ** (self.width_log2 + level)
            x = jnp.concatenate([UpConv(features)(x), skips[level]], axis=-1)
            x = UNetBlock(features)(x)
        fan_in = x.shape[-1]
        kernel = self.param("out_kernel", models.torch_kernel_init(),
                            (1, 1, fan_in, self.channels))
        bias = self.param("out_bias", models.torch_bias_init(fan_in), (self.channels,))
        recon = convolve(x, kernel.astype(x.dtype), (1, 1), ((0, 0), (0, 0))) + bias
        return {"recon": recon.astype(jnp.float32)}


# ----------------------------------------------------------------------------- perceptual

VGG_LAYERS = (("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool", ("conv2_1", 64, 128),
              ("conv2_2", 128, 128), "pool", ("conv3_1", 128, 256), ("conv3_2", 256, 256),
              ("conv3_3", 256, 256), ("conv3_4", 256, 256), "pool", ("conv4_1", 256, 512),
              ("conv4_2", 512, 512))  # VGG19 up to relu4_2, the reference's feature layer
VGG_COLLECTION, VGG_MODULE = "vgg", "vgg19"  # frozen weights: a train-state part, untrained
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """VGG19's relu4_2 features of images in [-1, 1] (1 channel repeated to 3, ImageNet
    normalisation), normalised by the stored feature mean and variance. Its weights
    live in the `vgg` collection and come from the user's file."""

    layers: tuple = VGG_LAYERS

    @nn.compact
    def __call__(self, x):
        def constant(name, shape, value=0.0):
            return self.variable(VGG_COLLECTION, name, lambda: jnp.full(shape, value)).value

        x = jnp.broadcast_to(x, x.shape[:-1] + (3,)) if x.shape[-1] == 1 else x
        x = (x * 0.5 + 0.5 - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
        for layer in self.layers:
            if layer == "pool":
                x = nn.max_pool(x, (2, 2), (2, 2))
                continue
            name, fan_in, features = layer
            kernel = constant(f"{name}_kernel", (3, 3, fan_in, features))
            x = jax.nn.relu(convolve(x, kernel, (1, 1), ((1, 1), (1, 1)))
                            + constant(f"{name}_bias", (features,)))
        channels = x.shape[-1]
        return ((x - constant("feature_mean", (channels,)))
                / constant("feature_var", (channels,), 1.0))


class PerceptualAutoEncoder(nn.Module):
    """The AE, plus the frozen VGG19 features of its input and reconstruction."""

    autoencoder: models.AutoEncoder

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None):
        outputs = self.autoencoder(x, train, mask, latent_mask, row_keys)
        features = VGGFeatures(name=VGG_MODULE)
        outputs["features_input"] = jax.lax.stop_gradient(features(x))
        outputs["features_recon"] = features(outputs["recon"])
        return outputs
