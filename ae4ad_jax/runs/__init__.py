"""A run's files: the workdir and its config.json with the workdir format (`workdir.py`),
metrics, summary, thresholds and scores (`results.py`), Orbax checkpoints
(`checkpoints.py`), the workdir's lock (`lock.py`), and the manifest of what produced the
numbers (`manifest.py`).

May import: core.
Libraries: jax, ml_collections, numpy, orbax, tensorboardX.
"""
