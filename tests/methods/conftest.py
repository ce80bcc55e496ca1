"""Fixtures of the method tests."""

import numpy as np
import pytest

from ae4ad_jax.methods import perceptual as vgg_weights
from ae4ad_jax.nets import vgg


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG19 weights file in torchvision's layout (the real one
    cannot be downloaded here)."""
    rng = np.random.default_rng(0)
    convs = [layer for layer in vgg.VGG_LAYERS if layer != "pool"]
    arrays = {}
    for (_, fan_in, features), index in zip(convs, vgg_weights.TORCHVISION_INDICES,
                                            strict=True):
        bound = 1 / np.sqrt(9 * fan_in)
        arrays[f"features.{index}.weight"] = rng.uniform(
            -bound, bound, (features, fan_in, 3, 3)).astype(np.float32)
        arrays[f"features.{index}.bias"] = np.zeros(features, np.float32)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.npz"
    np.savez(path, **arrays)
    return str(path)
