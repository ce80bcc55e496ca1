"""Where a run's arrays live: the (member, data) device mesh, placement, and step wrappers.

Every run is laid out on a 2-D mesh of devices with axes `member` and `data`;
one device is a mesh of one. Ensemble members are split over `member`, each
member's batch over `data`:

| array                                 | split over `member` | split over `data`      |
|---------------------------------------|---------------------|------------------------|
| train state (leading member axis)     | members             | repeated               |
| datasets (uint8 rows)                 | repeated            | contiguous row blocks  |
| a step's batch (gathered on device)   | members             | rows of the batch      |
| scores, maps, codes                   | members             | rows                   |

A per-device function sees its local block and uses collectives over `data`
(gradients, the loss's sums and row counts, BatchNorm statistics, the latent
codes of the entropy term). It is wrapped by `jax.jit` of `jax.shard_map`
(form "mesh", the default), by `jax.pmap` over the data axis (form "pmap",
whose member axis is 1: this JAX's pmap does not nest), or, on one device, by
`jax.jit` alone (form "none": the block is the whole array). All take and return
the same global arrays (`NamedSharding` on the mesh), so the trainer does not
know which form runs.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ae4ad_jax.core.errors import UserError

MEMBER, DATA = "member", "data"
FORMS = ("mesh", "pmap", "none")
# Specs of leading axes, for a whole argument (a pytree prefix).
REPLICATED = P()
MEMBERS = P(MEMBER)
ROWS = P(DATA)
MEMBER_ROWS = P(MEMBER, DATA)


@dataclasses.dataclass(frozen=True)
class Layout:
    mesh: Mesh  # axes (MEMBER, DATA)
    form: str  # "mesh" | "pmap" | "none" (one device, plain jit)

    @property
    def members(self) -> int:
        return self.mesh.shape[MEMBER]

    @property
    def data(self) -> int:
        return self.mesh.shape[DATA]

    def sharding(self, spec) -> NamedSharding:
        return NamedSharding(self.mesh, spec)


@struct.dataclass
class Rows:
    """A dataset's rows on the mesh, padded to a multiple of the data axis: `count` are real."""

    images: jax.Array  # uint8 [count + padding, H, W, C], split over DATA
    count: int = struct.field(pytree_node=False)


def _divisors(n):
    return [k for k in range(1, n + 1) if n % k == 0]


def choose_mesh_shape(num_members: int, num_devices: int, batch_size: int,
                      split_members: bool = True):
    """(member, data) axis sizes: members over as many devices as divide them (members need
    no communication), each batch over the rest; None if no shape uses every device."""
    for m in sorted(_divisors(num_devices) if split_members else [1], reverse=True):
        n = num_devices // m
        if num_members % m == 0 and batch_size % n == 0:
            return m, n
    return None


def single_device() -> Layout:
    """A mesh of one, the first device, whose programs are plain jit (no collectives)."""
    return Layout(Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), (MEMBER, DATA)), "none")


def create_layout(config, num_members: int) -> Layout:
    """The run's layout from `parallelism` and `mesh_shape`; UserError when it cannot work."""
    form = config.parallelism
    if form not in FORMS:
        raise UserError(f"Config key parallelism must be one of {FORMS}, got {form!r}.")
    if form == "none" and jax.process_count() > 1:
        raise UserError(f"parallelism='none' uses one device, but this run has "
                        f"{jax.process_count()} processes; use parallelism='mesh'.")
    devices = jax.devices()[:1] if form == "none" else jax.devices()
    if len(devices) == 1:
        return single_device()
    shape = tuple(config.mesh_shape)
    if not shape:
        shape = choose_mesh_shape(num_members, len(devices), config.batch_size,
                                  split_members=form == "mesh")
        if shape is None:
            raise UserError(
                f"{len(devices)} devices cannot all be used by {num_members} member(s) with "
                f"batch_size={config.batch_size}: no split of the devices into members x data "
                "divides both. Set parallelism='none', a batch_size that the device count "
                "divides, or mesh_shape=(members, data) on fewer devices.")
    check_mesh_shape(shape, len(devices), num_members, config.batch_size)
    if form == "pmap" and shape[0] > 1:
        raise UserError(f"parallelism='pmap' splits batches only, so mesh_shape={shape} must "
                        "have 1 as its member axis; use parallelism='mesh' to split members "
                        "over devices.")
    if form == "pmap" and jax.process_count() > 1:
        raise UserError("parallelism='pmap' runs on one host here; use parallelism='mesh' "
                        f"(the default) for {jax.process_count()} processes.")
    used = devices[:shape[0] * shape[1]]
    return Layout(Mesh(np.asarray(used).reshape(shape), (MEMBER, DATA)), form)


def check_mesh_shape(shape, num_devices, num_members, batch_size):
    """Raises UserError unless `shape` (members, data) fits the devices, members and batch."""
    if len(shape) != 2 or not all(isinstance(k, int) and k >= 1 for k in shape):
        raise UserError(f"Config key mesh_shape must be (members, data), two positive "
                        f"integers, got {shape!r}.")
    m, n = shape
    if m * n > num_devices:
        raise UserError(f"mesh_shape={shape} needs {m * n} devices; there are {num_devices}.")
    if num_members % m:
        raise UserError(f"mesh_shape={shape} splits members over {m} devices, but the run has "
                        f"{num_members} member(s); the member axis must divide the member "
                        "count.")
    if batch_size % n:
        raise UserError(f"The global batch_size={batch_size} does not divide across the data "
                        f"axis of {n} devices (mesh_shape={shape}); choose a batch size that "
                        f"is a multiple of {n}.")


# ----------------------------------------------------------------------------- placement


def place(tree, layout: Layout, spec):
    """Host or device arrays (the same on every process) as global arrays split by `spec`."""
    sharding = layout.sharding(spec)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(leaf):
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(one, tree)


def process_rows(layout: Layout, num_rows: int) -> slice:
    """The rows (of `num_rows`, padded to the data axis) that this process's devices hold."""
    sharding = layout.sharding(ROWS)
    padded = -(-num_rows // layout.data) * layout.data
    indices = sharding.addressable_devices_indices_map((padded,)).values()
    starts = [index[0].start or 0 for index in indices]
    stops = [padded if index[0].stop is None else index[0].stop for index in indices]
    return slice(min(starts), max(stops))


def place_rows(images, layout: Layout) -> Rows:
    """A dataset split in row blocks over DATA; each process hands over only its own rows.

    `images` is the host array of all rows (or, on many hosts, any array whose
    slice `process_rows` is this process's rows)."""
    count = images.shape[0]
    padded = -(-count // layout.data) * layout.data
    local = process_rows(layout, count)
    block = np.asarray(images[local.start:min(local.stop, count)])
    block = np.concatenate([block, np.zeros((local.stop - local.start - len(block),)
                                            + block.shape[1:], block.dtype)])
    array = jax.make_array_from_process_local_data(layout.sharding(ROWS), block,
                                                   (padded,) + images.shape[1:])
    return Rows(images=array, count=count)


def to_host(tree):
    """Global arrays as numpy arrays on every process (all processes must call it)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def is_primary() -> bool:
    """Process 0 writes logs, metrics, checkpoints' metadata and reports."""
    return jax.process_index() == 0


def broadcast_text(text: str, limit: int = 4096) -> str:
    """Process 0's `text` (its first `limit` bytes) on every process."""
    if jax.process_count() == 1:
        return text
    data = np.zeros(limit, np.uint8)
    encoded = text.encode()[:limit]
    data[:len(encoded)] = np.frombuffer(encoded, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return received.tobytes().rstrip(b"\0").decode(errors="replace")


# ----------------------------------------------------------------------------- wrappers


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
