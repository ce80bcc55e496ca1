"""The XLA:CPU option set on import (ae4ad_jax/__init__.py), checked in fresh processes."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = """
import os
import jax
import jax.numpy as jnp
import ae4ad_jax
from ae4ad_jax import models
step = jax.jit(lambda x, k: models._conv(x, k, 2, 1))
text = step.lower(jnp.ones((8, 16, 16, 16)), jnp.ones((4, 4, 16, 32))).compile().as_text()
print(os.environ.get("XLA_FLAGS", ""), "|", "ynn_fusion" in text)
"""


def _probe(**env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("XLA_FLAGS", "AE4AD_KEEP_XLA_FLAGS")}
    environment.update(env, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=120, check=True)
    flags, uses_ynn = result.stdout.strip().rsplit("|", 1)
    return flags.strip(), uses_ynn.strip() == "True"


def test_cpu_convolutions_leave_ynnpack_even_when_jax_was_imported_first():
    flags, uses_ynn = _probe(XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    assert flags == "--xla_cpu_enable_fast_math=false --xla_cpu_experimental_ynn_fusion_type="
    assert not uses_ynn


def test_users_own_setting_is_kept():
    flags, _ = _probe(AE4AD_KEEP_XLA_FLAGS="1")
    assert flags == ""
    flags, _ = _probe(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT")
    assert flags == "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
