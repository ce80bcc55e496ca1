"""`ae-perceptual`: the AE trained and scored with the relative L1 error of VGG19 relu4_2
features, whose frozen ImageNet weights come from the user's file.

ImageNet weights cannot be downloaded at run time, so the user converts
torchvision's once and passes the file (`perceptual.vgg_weights`):

    import numpy as np, torchvision
    features = torchvision.models.vgg19(weights="IMAGENET1K_V1").features.state_dict()
    np.savez("vgg19.npz", **{f"features.{k}": v.numpy() for k, v in features.items()})

Keys are torchvision's (`features.0.weight` [64, 3, 3, 3], `features.0.bias`, ...,
up to `features.21`, conv4_2). Optional `feature_mean` and `feature_var` [512]
normalise the relu4_2 features (the reference's ILSVRC2012 statistics); without
them the features are used as they are.
"""

import dataclasses
import functools
import os

import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import image_losses, parts
from ae4ad_jax.methods.contract import Method
from ae4ad_jax.nets.vgg import VGG_COLLECTION, VGG_LAYERS, VGG_MODULE, PerceptualAutoEncoder

# torchvision's index of each convolution of VGG19's `features`, conv1_1 .. conv4_2.
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21)
FEATURES = 512


def _read(path: str):
    if not path:
        raise UserError(
            "Method ae-perceptual needs ImageNet VGG19 weights, which cannot be downloaded "
            "at run time: set --config.perceptual.vgg_weights=FILE.npz (how to make the file: "
            "ae4ad_jax/methods/perceptual.py).")
    path = os.path.expanduser(path)
    try:
        with np.load(path) as archive:
            return {key: np.asarray(archive[key]) for key in archive.files}
    except FileNotFoundError:
        raise UserError(f"VGG19 weights file {path} (perceptual.vgg_weights) does not "
                        "exist.") from None
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read VGG19 weights file {path} as .npz: {error}.") from None


def _take(arrays, key, shape, path):
    if key not in arrays:
        raise UserError(f"VGG19 weights file {path} has no array {key!r} (expected "
                        f"torchvision's `features` keys, e.g. features.0.weight).")
    value = arrays[key]
    if value.shape != shape:
        raise UserError(f"VGG19 weights file {path}: {key} has shape {value.shape}, "
                        f"expected {shape}.")
    if not np.all(np.isfinite(value)):
        raise UserError(f"VGG19 weights file {path}: {key} holds non-finite values.")
    return value.astype(np.float32)


@functools.lru_cache(maxsize=2)
def load(path: str) -> dict:
    """The `vgg` variables of `nets.vgg.VGGFeatures` (HWIO kernels) from `path`."""
    arrays = _read(path)
    convs = [layer for layer in VGG_LAYERS if layer != "pool"]
    variables = {}
    for (name, fan_in, features), index in zip(convs, TORCHVISION_INDICES, strict=True):
        weight = _take(arrays, f"features.{index}.weight", (features, fan_in, 3, 3), path)
        variables[f"{name}_kernel"] = weight.transpose(2, 3, 1, 0)
        variables[f"{name}_bias"] = _take(arrays, f"features.{index}.bias", (features,), path)
    for key, default in (("feature_mean", 0.0), ("feature_var", 1.0)):
        variables[key] = (_take(arrays, key, (FEATURES,), path) if key in arrays
                          else np.full(FEATURES, default, np.float32))
    if np.any(variables["feature_var"] == 0):
        raise UserError(f"VGG19 weights file {path}: feature_var has zeros.")
    return variables


@dataclasses.dataclass(frozen=True)
class Settings:
    """Config group `perceptual`."""

    vgg_weights: str = setting("", "the ImageNet VGG19 .npz file (see this module's docstring)")


def _model(method, latent_size, axis_name):
    return PerceptualAutoEncoder(parts.autoencoder(method, latent_size, axis_name))


def _constants(method) -> dict:
    return {VGG_COLLECTION: {VGG_MODULE: load(method.settings.vgg_weights)}}


def perceptual_error(method, outputs, images):
    error = image_losses.relative_l1(outputs["features_input"], outputs["features_recon"])
    return jnp.mean(image_losses.resize_bilinear(error, *images.shape[1:3]), axis=-1)


def perceptual_loss(method, outputs, images, latent_mask):
    del images, latent_mask
    error = image_losses.relative_l1(outputs["features_input"], outputs["features_recon"])
    return jnp.mean(error, axis=(1, 2, 3)), {}


def check(method, config):
    del config
    method.frozen_variables()  # the weights file exists and fits


METHODS = (Method(
    "ae-perceptual", model=_model, loss=perceptual_loss, error_map=perceptual_error,
    constants=_constants, check=check, plain_code=True, group="perceptual",
    settings_type=Settings),)
