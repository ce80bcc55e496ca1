"""Estimators of information quantities of latent codes, as pure JAX functions that run on
the device: the entropy H(Z) (`entropy.py`). The training loss uses the batch form; the
evaluation measures codes with them.

May import: core.
Libraries: jax, numpy.
"""
