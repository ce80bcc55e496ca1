"""Members of an ensemble: who they are, and how a per-member function is lifted.

A run trains M members at once: every leaf of the train state has a leading
member axis. Members differ by latent size and seed. Mixed latent sizes share
one bottleneck width max(d); each member is initialised exactly as a
standalone AE of its own size (same key, fan-in d), zero-padded to max(d), and
masks the units beyond its d, so it computes the same function and follows the
same training as that standalone model (tests/test_ensemble.py).
"""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp

LOWERINGS = ("auto", "vmap", "unroll", "host")
EPOCH_LOOPS = ("auto", "scan", "host")


def members_from_config(config) -> list[dict]:
    """The grid latent_sizes x seeds x entropy_weights; an empty axis is its single value.

    `entropy_weight` appears in a member only when the run sweeps or sets it.
    """
    latent_sizes = tuple(config.latent_sizes) or (config.latent_size,)
    seeds = tuple(config.seeds) or (config.seed,)
    weights = tuple(config.entropy_weights) or (config.entropy_weight,)
    with_weight = bool(config.entropy_weights) or config.entropy_weight != 0
    members = []
    for d, s, weight in itertools.product(latent_sizes, seeds, weights):
        member = {"latent_size": int(d), "seed": int(s)}
        if with_weight:
            member["entropy_weight"] = float(weight)
        members.append(member)
    return members


def latent_mask(latent_size: int, width: int):
    """[width] float: 1 for the member's own latent units, 0 for the padding."""
    return (jnp.arange(width) < latent_size).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Plan:
    lowering: str  # "vmap" | "unroll" | "host"
    loop: str  # "scan" | "host"
    chunk: int  # members per program (0: all)


def plan_execution(config, num_members, member_bytes_fn) -> Plan:
    """How this run executes its members, from the config and the backend."""
    lowering, loop = resolve_backend_choices(config)
    chunk = config.member_chunk_size
    if chunk == 0 and lowering != "host":
        chunk = auto_chunk_size(num_members, member_bytes_fn)
    return Plan(lowering, loop, chunk)


def auto_chunk_size(num_members, member_bytes_fn, fraction=0.7) -> int:
    """Members per program that fit in `fraction` of the device's memory (all if unknown)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit:
        return num_members
    return max(1, min(num_members, int(fraction * limit) // max(member_bytes_fn(), 1)))


def resolve_backend_choices(config) -> tuple[str, str]:
    """(member lowering, epoch loop) for this backend; "auto" picks the fast one.

    XLA:CPU runs convolutions inside a while loop (`lax.scan`, `lax.map`) tens
    of times slower than outside one (measured: a conv gradient step 316 ms in a
    scan, 7.7 ms outside), and vmapped convolutions become slow grouped
    convolutions. So on CPU members run one after another ("host") and the
    epoch is a host loop of jitted steps (asynchronous dispatch, data on the
    device); on GPU/TPU members are vmapped into one program and the epoch is
    one `lax.scan`. "unroll" puts the members side by side in one program. All
    choices compute the same function.
    """
    cpu = jax.default_backend() == "cpu"
    lowering, loop = config.member_lowering, config.epoch_loop
    if lowering == "auto":
        lowering = "host" if cpu else "vmap"
    if loop == "auto":
        loop = "host" if cpu else "scan"
    return lowering, loop


def over_members(fn, lowering: str):
    """Lifts `fn` (every argument with a leading member axis) over that axis in one program."""
    if lowering == "vmap":
        return jax.vmap(fn)

    def unrolled(*args):
        num_members = jax.tree_util.tree_leaves(args)[0].shape[0]
        outs = [fn(*member(args, m)) for m in range(num_members)]
        return stack(outs)

    return unrolled


def member(tree, m: int, keep_axis: bool = False):
    """Member m of a stacked tree (with a member axis of 1 when `keep_axis`)."""
    index = slice(m, m + 1) if keep_axis else m
    return jax.tree_util.tree_map(lambda x: x[index], tree)


@functools.partial(jax.jit, static_argnums=2)
def _members_slice(tree, start, size: int):
    """Members start..start+size-1; `start` is traced, so one compile serves every chunk."""
    return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)


def chunks(tree, size: int):
    """Consecutive groups of `size` members (the last may be smaller); one device call each."""
    num_members = jax.tree_util.tree_leaves(tree)[0].shape[0]
    for start in range(0, num_members, size):
        yield _members_slice(tree, start, min(size, num_members - start))


@jax.jit
def stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


@functools.partial(jax.jit, static_argnums=1)
def concatenate(trees, axis=0):
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis), *trees)
