"""ae4ad-jax: reconstruction-based anomaly detection for medical images in JAX."""

import os

__version__ = "0.1.0"

# XLA:CPU hands convolutions and dots to YNNPACK by default. On the benchmark's AE
# its own (Eigen) convolutions are faster (training +15-25%, scoring +30-65% on 2
# cores, A/B runs of the train step and of scoring, README), but Eigen multiplies by
# a transposed matrix (a Dense layer's input gradient) 3-4x slower than by a plain
# one, and YNNPACK does not: so YNNPACK keeps the dots ("dot" fusions; train step
# 4-12% faster in in-process A/B runs) and gives up the convolutions. The option
# concerns only the CPU backend and must be set before JAX starts a backend; a
# user's own setting wins, and AE4AD_KEEP_XLA_FLAGS=1 leaves XLA_FLAGS untouched.
CPU_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"


def _prefer_xla_cpu_convolutions():
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags or os.environ.get("AE4AD_KEEP_XLA_FLAGS"):
        return
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return
    except (ImportError, AttributeError):
        pass
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_XLA_FLAG}".strip()


_prefer_xla_cpu_convolutions()
