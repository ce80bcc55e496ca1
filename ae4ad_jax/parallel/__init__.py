"""Where and how a run computes: the ensemble's member axis (`ensemble.py`), the (member,
data) device mesh with its jit, shard_map and pmap wrappers (`sharding.py`), many
processes (`distributed.py`), and the execution plan of this backend (`execution.py`).

May import: core, nets.
Libraries: flax, jax, numpy.
"""
