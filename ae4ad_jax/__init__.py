"""ae4ad-jax: reconstruction-based anomaly detection for medical images in JAX."""

__version__ = "0.1.0"
