"""Scoring on the device: every member's anomaly maps, scores and codes of a set of images,
jit-compiled, batched and padded, on any layout (`parallel.mesh`, `parallel.programs`).

Training's evaluation, the detector, the score command and the StableHLO export all
score through `score_images`, so a model scores the same wherever it runs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core import batching
from ae4ad_jax.data.preprocessing import to_float
from ae4ad_jax.methods import contract, parts
from ae4ad_jax.methods.contract import row_keys
from ae4ad_jax.parallel import ensemble, execution, mesh, programs


def forward_fn(method, weights, noise=None):
    """The trained member as `forward(x, row_keys, train=False) -> outputs`; in train mode
    BatchNorm uses the batch's statistics and updates nothing. `noise` ([B, width]) is a
    Gaussian code's noise, given instead of drawn from the row keys."""
    model = method.create_model(weights["latent_mask"].shape[-1])
    given = {} if noise is None else {"noise": noise}

    def forward(x, keys, train=False):
        call = functools.partial(model.apply, weights["variables"], x,
                                 latent_mask=weights["latent_mask"], row_keys=keys, **given)
        return call(train=True, mutable=["batch_stats"])[0] if train else call(train=False)

    return forward


def scoring_weights(state) -> dict:
    """What scoring reads of a train state (any leading member axes kept): the model's
    variables, the latent mask and the members' keys."""
    return {"variables": {"params": state.params, "batch_stats": state.batch_stats,
                          **state.constants},
            "latent_mask": state.latent_mask, "rng": state.rng}


def scoring_keys(weights, positions):
    """The random keys of the scored set's images at `positions` (one member)."""
    return row_keys(jax.random.fold_in(weights["rng"], contract.EVAL_STREAM), positions)


def score_batch(method, weights, images, positions, with_maps, with_recon=False,
                noise=None):
    """Scores one batch for one member: dict of [B] (and [B, H, W]) arrays; `positions`
    are the images' indices in the scored set (their random streams). `with_recon` adds
    the reconstructions [B, H, W, C]; `noise` is as `forward_fn`'s."""
    forward = forward_fn(method, weights, noise)
    maps, scores, outputs = method.score(forward, images, scoring_keys(weights, positions),
                                         weights["latent_mask"])
    result = {"score": scores, "mse": parts.per_image_mse(outputs["recon"], images)}
    for key in ("z", "z_norm", "bits"):  # the code, standardised, its rate in bits
        if method.has_latent and key in outputs:
            result[key] = outputs[key]
    if with_maps and maps is not None:
        result["map"] = maps
    if with_recon:
        result["recon"] = outputs["recon"]
    return result


@functools.partial(jax.jit, static_argnames="method")
def score_examples(weights, images, positions, *, method):
    """One member's (no member axis) scores, maps and reconstructions of a few uint8
    images at `positions` of the scored set: the random streams `score_images` gives
    them, so an example shows what the evaluation scored."""
    return score_batch(method, weights, to_float(images), positions, with_maps=True,
                        with_recon=True)


@functools.partial(jax.jit, static_argnames=("method", "batch_size", "with_maps", "lowering"))
def score_images(weights, images, first=0, *, method, batch_size, with_maps, lowering="vmap"):
    """Scores every image with every member in one device call.

    `weights` ({"variables", "latent_mask", "rng"}) have a leading member axis M,
    lifted by `lowering` ("vmap" or "unroll"); `images` are uint8 [N, H, W, C], the
    scored set's rows `first` to `first + N - 1`. The last batch is padded and the
    padding cut off, so each image is scored exactly once. Returns arrays of shape
    [M, N] (maps [M, N, H, W]).
    """
    batches = batching.split_padded(images, batch_size)
    starts = first + batch_size * jnp.arange(batches.shape[0])

    def one_batch(args):
        batch, start = args
        x = to_float(batch)
        positions = start + jnp.arange(batch_size)

        def score(one):
            return score_batch(method, one, x, positions, with_maps)

        return ensemble.over_members(score, lowering)(weights)

    out = jax.lax.map(one_batch, (batches, starts))  # leaves [num_batches, M, B, ...]
    return jax.tree_util.tree_map(
        lambda x: jnp.moveaxis(x, 0, 1).reshape((x.shape[1], -1) + x.shape[3:])[
            :, :images.shape[0]], out)


def device_scores(weights, images, *, method, batch_size, with_maps, lowering, data_shards):
    """This device's members' scores of its rows (the per-device program)."""
    first = jax.lax.axis_index(mesh.DATA) * images.shape[0] if data_shards > 1 else 0
    return score_images(weights, images, jnp.int32(first), method=method,
                                 batch_size=batch_size, with_maps=with_maps, lowering=lowering)


def score_members(weights, rows, *, batch_size, method, plan, layout=None, with_maps=False):
    """Every member's scores of `rows` (placed, or a host uint8 array) by the members'
    `weights` (`scoring_weights`), in batches of `batch_size` images, on the host: arrays
    [M, N] (maps [M, N, H, W])."""
    layout = layout or mesh.single_device()
    if not isinstance(rows, mesh.Rows):
        rows = mesh.place_rows(np.asarray(rows), layout)
    score = programs.distribute(
        device_scores, layout, (mesh.MEMBERS, mesh.ROWS), mesh.MEMBER_ROWS,
        method=method, with_maps=with_maps, lowering=plan.lowering, data_shards=layout.data,
        batch_size=batching.num_batches(batch_size, layout.data))

    scores = mesh.to_host(ensemble.in_chunks(
        lambda chunk: score(chunk, rows.images), weights,
        execution.members_per_program(plan, layout)))
    return jax.tree_util.tree_map(lambda x: x[:, :rows.count], scores)
