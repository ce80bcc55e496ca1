"""Reconstruction methods on one contract: the contract (`contract.py`), the parts several
methods share (`parts.py`, `image_losses.py`), one module per method or small family
(`autoencoder.py`, `aeu.py`, `ceae.py`, `constrained.py`, `dae.py`, `ganomaly.py`,
`memae.py`, `perceptual.py`, `ssim.py`, `vae.py`), and the registry (`registry.py`) that
names them. Adding a method: docs/extending.md.

May import: core, nets, estimators, parallel (the backend's layer kernels).
Libraries: dm_pix, jax, numpy.
"""
