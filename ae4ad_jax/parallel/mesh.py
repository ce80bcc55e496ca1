"""Where a run's arrays live: the (member, data) device mesh, its choice, and placement.

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
codes of the entropy term); `programs.py` runs it over the global arrays
(`NamedSharding` on the mesh) in the layout's form: "mesh" (shard_map, the
default), "pmap", or "none" (one device).
"""

import dataclasses

import jax
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
