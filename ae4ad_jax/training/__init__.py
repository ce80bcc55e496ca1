"""Training: the train state (`state.py`), the pure steps and epochs (`step.py`), the driver
of a run (`loop.py`), what a run needs in device memory (`memory.py`), stopping at a
signal (`preemption.py`), method comparisons (`comparison.py`), and exporting one member
out of its run, as a workdir or StableHLO (`export.py`).

May import: core, nets, estimators, data, parallel, methods, config, evaluation, runs,
reporting, serving.
Libraries: flax, jax, ml_collections, numpy, optax.
"""
