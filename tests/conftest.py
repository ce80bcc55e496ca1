"""Test settings: fast CPU compiles (here and in subprocesses), the command line's
XLA:CPU option, repository root importable (for `configs`)."""

import os
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ae4ad_jax import cpu_kernels, sharding  # noqa: E402

cpu_kernels.apply_xla_cpu_flags()  # as the command-line entry points do
jax.config.update("jax_disable_most_optimizations", True)
# The same for the command lines and scripts that tests start in subprocesses.
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Frees each test module's compiled programs when it ends. XLA:CPU maps every
    compiled kernel into memory; a whole suite's worth of live programs exceeds Linux's
    limit on memory mappings (vm.max_map_count, 65530) and the compiler then crashes."""
    yield
    sharding.clear_programs()
    jax.clear_caches()


@pytest.fixture
def test_config(tmp_path_factory):
    """configs/test.py with a TFDS dir shared by the whole session."""
    from configs import test

    config = test.get_config()
    config.tfds_dir = str(tmp_path_factory.getbasetemp() / "tfds")
    return config
