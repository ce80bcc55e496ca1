"""A per-device function as one program over the mesh's global arrays (`mesh.py`).

`distribute` wraps it by `jax.jit` of `jax.shard_map` (form "mesh", the default), by
`jax.pmap` over the data axis with the global arrays reshaped to pmap's [devices,
block] grid and back (form "pmap", whose member axis is 1: this JAX's pmap does not
nest), or, on one device, by `jax.jit` alone (form "none": the block is the whole
array). All take and return the same global arrays, so the trainer does not know
which form runs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ae4ad_jax.parallel.mesh import DATA, MEMBERS, REPLICATED, ROWS, Layout


def distribute(fn, layout: Layout, in_specs: tuple, out_specs, donate: bool = False,
               **static):
    """`fn(*local blocks, **static)` run on every device of the layout, as one program over
    global arrays; `donate` lets it reuse the first argument's buffers."""
    key = tuple(sorted(static.items()))
    return _distributed(fn, layout, in_specs, out_specs, donate, key)


@functools.lru_cache(maxsize=64)  # programs of older runs in one process are freed
def _distributed(fn, layout, in_specs, out_specs, donate, static):
    body = functools.partial(fn, **dict(static))
    if layout.form == "none":  # one device: the block is the whole array
        return jax.jit(body, donate_argnums=0 if donate else ())
    if layout.form == "mesh":
        mapped = jax.shard_map(body, mesh=layout.mesh, in_specs=in_specs,
                               out_specs=out_specs, check_vma=False)
        return jax.jit(mapped, donate_argnums=0 if donate else ())
    devices = list(layout.mesh.devices.ravel())
    mapped = jax.pmap(body, axis_name=DATA, devices=devices,
                      donate_argnums=0 if donate else ())
    per_device = NamedSharding(Mesh(np.asarray(devices), (DATA,)), P(DATA))  # pmap's layout
    to_grid = jax.jit(lambda args: [_over(_to_grid, a, s, layout.data)
                                    for a, s in zip(args, in_specs, strict=True)],
                      out_shardings=per_device)
    from_grid = jax.jit(lambda out: _over(_from_grid, out, out_specs, layout.data))

    def run(*args):
        return from_grid(mapped(*to_grid(args)))

    return run


def clear_programs() -> None:
    """Drops the wrapped programs (and with them their compiled executables)."""
    _distributed.cache_clear()


def _over(convert, tree, spec, n):
    """`convert(leaf, spec, n)` on every leaf; `spec` is a prefix of the tree."""
    if isinstance(spec, P):
        return jax.tree_util.tree_map(lambda x: convert(jnp.asarray(x), spec, n), tree)
    return jax.tree_util.tree_map(lambda s, t: _over(convert, t, s, n), spec, tree,
                                  is_leaf=lambda s: isinstance(s, P))


def _to_grid(x, spec, n):
    """A global array as pmap's [n, local block] layout (the member axis is whole)."""
    if spec in (REPLICATED, MEMBERS):
        return jnp.broadcast_to(x, (n,) + x.shape)
    if spec == ROWS:
        return x.reshape((n, x.shape[0] // n) + x.shape[1:])
    x = x.reshape((x.shape[0], n, x.shape[1] // n) + x.shape[2:])  # MEMBER_ROWS
    return jnp.swapaxes(x, 0, 1)


def _from_grid(x, spec, n):
    """pmap's [n, local block] output as the global array."""
    if spec in (REPLICATED, MEMBERS):
        return x[0]
    if spec == ROWS:
        return x.reshape((-1,) + x.shape[2:])
    x = jnp.swapaxes(x, 0, 1)  # MEMBER_ROWS: [M, n, N/n, ...]
    return x.reshape((x.shape[0], n * x.shape[2]) + x.shape[3:])
