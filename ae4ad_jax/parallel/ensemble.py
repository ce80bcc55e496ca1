"""Members of an ensemble: who they are, their stacked state, and per-member lifting.

A run trains M members at once: every leaf of the train state has a leading
member axis. Members differ by latent size, seed and entropy weight. Mixed
latent sizes share one bottleneck width max(d); each member is initialised
exactly as a standalone AE of its own size (same key, fan-in d), zero-padded
to max(d), and masks the units beyond its d, so it computes the same function
and follows the same training as that standalone model (tests/parallel/test_ensemble.py).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core import trees
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.nets.layers import LATENT_IN, LATENT_OUT, LATENT_UNITS, MEMORY


def member_hparams(config) -> list[dict]:
    """Each member's hyperparameters ({"latent_size", "seed", ...}): the grid latent_sizes
    x seeds x entropy_weights x rate_weights, an empty axis its single value.

    `entropy_weight` appears in a member only when the run sweeps or sets it,
    `rate_weight` whenever the learned rate is on.
    """
    latent_sizes = tuple(config.latent_sizes) or (config.latent_size,)
    seeds = tuple(config.seeds) or (config.seed,)
    weights = tuple(config.entropy_weights) or (config.entropy_weight,)
    with_weight = bool(config.entropy_weights) or config.entropy_weight != 0
    rates = tuple(config.rate_weights) or (config.rate_weight,)
    grid = []
    for d, s, weight, rate in itertools.product(latent_sizes, seeds, weights, rates):
        hparams = {"latent_size": int(d), "seed": int(s)}
        if with_weight:
            hparams["entropy_weight"] = float(weight)
        if config.rate.enabled:
            hparams["rate_weight"] = float(rate)
        grid.append(hparams)
    return grid


def check_member(members: list[dict], index: int, where: str) -> dict:
    """Member `index`'s hyperparameters (`members[index]`), or a UserError naming the
    members that `where` (a workdir) has."""
    if not 0 <= index < len(members):
        raise UserError(f"Member {index} does not exist: {where} has members 0 to "
                        f"{len(members) - 1}.")
    return members[index]


def latent_mask(latent_size: int, width: int) -> np.ndarray:
    """[width] float32: 1 for the member's own latent units, 0 for the padding."""
    return (np.arange(width) < latent_size).astype(np.float32)


def resize_latent(tree, size: int):
    """Pads with zeros (or cuts) the latent axis of a params-shaped tree to `size`.

    Works on params, batch statistics and anything with their structure (Adam
    moments): the output axis of every `to_latent*` layer, the input axis of every
    `from_latent*` kernel, the code axis of MemAE's memory and the last axis of every
    variable of a `latent_units*` module (the latent normaliser, the rate's density).
    """

    def fit(path, leaf):
        names = trees.path_names(path)
        if any(n.startswith((LATENT_OUT, LATENT_UNITS)) for n in names) or names[-1] == MEMORY:
            axis = leaf.ndim - 1
        elif any(n.startswith(LATENT_IN) for n in names) and names[-1] == "kernel":
            axis = leaf.ndim - 2
        else:
            return leaf
        if leaf.shape[axis] >= size:
            return jax.lax.slice_in_dim(leaf, 0, size, axis=axis)
        widths = [(0, 0)] * leaf.ndim
        widths[axis] = (0, size - leaf.shape[axis])
        return jnp.pad(leaf, widths)

    return jax.tree_util.tree_map_with_path(fit, tree)


def num_members(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def over_members(fn, lowering: str):
    """Lifts `fn` (every argument with a leading member axis) over that axis in one program:
    batched ("vmap") or side by side ("unroll")."""
    if lowering == "vmap":
        return jax.vmap(fn)

    def unrolled(*args):
        return stack([fn(*take(args, m)) for m in range(num_members(args))])

    return unrolled


def in_chunks(fn, tree, size: int):
    """`fn(tree)` computed on consecutive groups of `size` members (0: all at once), the
    outputs (leading member axis) joined."""
    if not 0 < size < num_members(tree):
        return fn(tree)
    return concatenate([fn(part) for part in chunks(tree, size)])


def take(tree, m: int, keep_axis: bool = False):
    """Member m of a stacked tree (with a member axis of 1 when `keep_axis`)."""
    index = slice(m, m + 1) if keep_axis else m
    return jax.tree_util.tree_map(lambda x: x[index], tree)


@functools.partial(jax.jit, static_argnums=2)
def slice_members(tree, start, size: int):
    """Members start..start+size-1 of a tree on the devices, in one program; `start` is
    traced, so one compile serves every chunk."""
    return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)


def chunks(tree, size: int):
    """Consecutive groups of `size` members (the last may be smaller); one device call each."""
    total = num_members(tree)
    for start in range(0, total, size):
        yield slice_members(tree, start, min(size, total - start))


@functools.partial(jax.jit, static_argnums=1)
def stack(trees, axis=0):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis), *trees)


@functools.partial(jax.jit, static_argnums=1)
def concatenate(trees, axis=0):
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis), *trees)
