"""The perceptual AE's VGG19 weights: read from the user's `.npz`, checked, converted.

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

import functools
import os

import numpy as np

from ae4ad_jax.errors import UserError
from ae4ad_jax.family_models import VGG_LAYERS

# torchvision's index of each convolution of VGG19's `features`, conv1_1 .. conv4_2.
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21)
FEATURES = 512


def _read(path: str):
    if not path:
        raise UserError(
            "Method ae-perceptual needs ImageNet VGG19 weights, which cannot be downloaded "
            "at run time: set --config.perceptual.vgg_weights=FILE.npz (how to make the file: "
            "ae4ad_jax/vgg_weights.py).")
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
    """The `vgg` variables of `family_models.VGGFeatures` (HWIO kernels) from `path`."""
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
