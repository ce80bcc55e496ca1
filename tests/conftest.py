"""Test settings: fast CPU compiles, repository root importable (for `configs`)."""

import os
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture
def test_config(tmp_path_factory):
    """configs/test.py with a TFDS dir shared by the whole session."""
    from configs import test

    config = test.get_config()
    config.tfds_dir = str(tmp_path_factory.getbasetemp() / "tfds")
    return config
