"""ae4ad-jax: reconstruction-based anomaly detection for medical images in JAX.

Importing the package changes no process-wide setting. The command-line entry
points call `cpu_kernels.apply_xla_cpu_flags()` before JAX starts; a library
user who wants the same on CPU calls it before the first JAX computation.
"""

__version__ = "0.1.0"
