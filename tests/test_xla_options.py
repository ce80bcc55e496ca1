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
conv = jax.jit(lambda x, k: models._conv(x, k, 2, 1))
text = conv.lower(jnp.ones((8, 16, 16, 16)), jnp.ones((4, 4, 16, 32))).compile().as_text()
dot = jax.jit(lambda g, w: g @ w.T)  # a Dense layer's input gradient
dot_text = dot.lower(jnp.ones((64, 256)), jnp.ones((128, 256))).compile().as_text()
print(os.environ.get("XLA_FLAGS", ""), "|", "ynn_fusion" in text, "ynn_fusion" in dot_text)
"""


def _probe(**env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("XLA_FLAGS", "AE4AD_KEEP_XLA_FLAGS")}
    environment.update(env, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=120, check=True)
    flags, uses_ynn = result.stdout.strip().rsplit("|", 1)
    conv, dot = (value == "True" for value in uses_ynn.split())
    return flags.strip(), conv, dot


def test_cpu_convolutions_leave_ynnpack_dots_stay_even_when_jax_was_imported_first():
    flags, conv_ynn, dot_ynn = _probe(XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    assert flags == "--xla_cpu_enable_fast_math=false --xla_cpu_experimental_ynn_fusion_type=dot"
    assert not conv_ynn and dot_ynn


def test_users_own_setting_is_kept():
    flags, _, _ = _probe(AE4AD_KEEP_XLA_FLAGS="1")
    assert flags == ""
    flags, _, _ = _probe(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT")
    assert flags == "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
