"""Reconstruction methods on one contract: the contract (`contract.py`), the parts several
methods share (`parts.py`, `image_losses.py`), one module per method or small family, and
the registry (`registry.py`) that names them. Adding a method: docs/extending.md.

May import: core, nets, estimators, parallel (the backend's layer kernels).
"""
