"""Where and how a run computes: the ensemble's member axis (`ensemble.py`), the (member,
data) device mesh, its choice and the placement of arrays on it (`mesh.py`), a per-device
function as one program over the mesh: shard_map, pmap or jit (`programs.py`), starting
many processes (`distributed.py`), and the execution plan of this backend (`execution.py`).

May import: core, nets.
Libraries: flax, jax, numpy.
"""
