"""The perceptual AE: the AE with a frozen VGG19 feature extractor up to relu4_2, whose
weights come from the user's file (`methods/perceptual.py`); tensors are NHWC."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae4ad_jax.nets.autoencoder import AutoEncoder
from ae4ad_jax.nets.kernels import convolve

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
                x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
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

    autoencoder: AutoEncoder

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None, row_keys=None):
        outputs = self.autoencoder(x, train, mask, latent_mask, row_keys)
        features = VGGFeatures(name=VGG_MODULE)
        outputs["features_input"] = jax.lax.stop_gradient(features(x))
        outputs["features_recon"] = features(outputs["recon"])
        return outputs
