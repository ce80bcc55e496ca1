"""The pure training steps: one optimiser step of one member, lifted over members and laid
out on the device mesh, and one epoch of them.

Each epoch draws a per-member permutation of the device-resident uint8 train set.
The last partial batch is kept, padded to the batch size with zero-weight rows
that enter neither the loss nor the BatchNorm statistics, so every step has one
shape and the result equals training on the unpadded batch. How steps and
members are compiled on this backend is an `execution.Plan`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core import batching
from ae4ad_jax.data.preprocessing import to_float
from ae4ad_jax.methods import contract
from ae4ad_jax.parallel import ensemble, execution, mesh, programs
from ae4ad_jax.training.state import TrainState


def train_step(state: TrainState, images, weights, positions, rng, *, method, axis_name=None):
    """One optimiser step of one member on its rows of the batch: `images` [B, H, W, C]
    float, `weights` [B] (0 for padding rows), `positions` [B] the rows' places in the
    global batch (their random streams).

    With `axis_name`, the batch is split over that device axis and the step is the same
    function of the whole batch: the loss is averaged over the global count of real
    rows, BatchNorm pools its statistics, the entropy term sees every device's codes,
    and gradients are summed across devices.
    """
    batch = contract.Batch(weights, rng, contract.row_keys(rng, positions), state.latent_mask,
                          state.entropy_weight, state.rate_weight, axis_name)
    inputs = method.corrupt(method, images, batch) if method.corrupt else images
    model = method.create_model(state.latent_mask.shape[-1], axis_name)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats, **state.constants}
        outputs, updates = model.apply(variables, inputs, train=True, mask=weights,
                                       latent_mask=state.latent_mask,
                                       row_keys=batch.keys(contract.MODEL_STREAM),
                                       mutable=["batch_stats"])
        share, shares, terms = contract.objective(method, outputs, images, batch)
        return share, (updates.get("batch_stats", {}), shares, terms)

    (_, (batch_stats, shares, terms)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    grads, shares = batch.total((grads, shares))
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    loss = shares["reconstruction_loss"]
    if "latent_entropy" in terms:
        loss = loss + state.entropy_weight * terms["latent_entropy"]
    if "rate_bits" in shares:
        loss = loss + state.rate_weight * shares["rate_bits"]
    return state, {"loss": loss, **shares, **terms}


def epoch_batches(rng, epoch, num_images, batch_size):
    """A member's order for one epoch: indices and weights, both [steps, batch_size]."""
    order = jax.random.permutation(jax.random.fold_in(rng, epoch), num_images)
    return (batching.split_padded(order, batch_size),
            batching.split_padded(jnp.ones(num_images), batch_size))


def plan_epoch(state, epoch, *, num_images, batch_size):
    """Every member's batches for one epoch: indices and weights [M, steps, B]."""
    data_keys = jax.vmap(jax.random.fold_in, (0, None))(state.rng, contract.DATA_STREAM)
    return jax.vmap(epoch_batches, (0, None, None, None))(data_keys, epoch, num_images,
                                                           batch_size)


def gather_batch(images, indices, data_shards: int):
    """This device's rows of the members' batches: `images` uint8 [S, H, W, C] is this
    device's block of the dataset, `indices` [M, B] global row numbers; returns float
    [M, B / data_shards, H, W, C].

    Each device takes the rows it holds (zero for the others) and a reduce-scatter over
    the data axis sums them, so every device receives its slice of the exact batch.
    """
    if data_shards == 1:
        return to_float(images[indices])
    block = images.shape[0]
    local = indices - jax.lax.axis_index(mesh.DATA) * block
    held = (local >= 0) & (local < block)
    rows = to_float(images[jnp.clip(local, 0, block - 1)])
    rows = jnp.where(held[..., None, None, None], rows, 0.0)
    return jax.lax.psum_scatter(rows, mesh.DATA, scatter_dimension=1, tiled=True)


def local_rows(values, data_shards: int):
    """This device's slice [M, B / data_shards] of per-row `values` [M, B]."""
    if data_shards == 1:
        return values
    size = values.shape[1] // data_shards
    return jax.lax.dynamic_slice_in_dim(values, jax.lax.axis_index(mesh.DATA) * size,
                                        size, axis=1)


def device_steps(state, images, indices, weights, first, *, method, lowering, num_steps,
                 data_shards):
    """Steps first .. first + num_steps - 1 of this device's members (the per-device
    program): `images` this device's rows, `indices` and `weights` [M, steps, B]. Returns
    the state and metrics [M, num_steps]."""
    axis_name = mesh.DATA if data_shards > 1 else None
    step_fn = ensemble.over_members(functools.partial(train_step, method=method,
                                                      axis_name=axis_name), lowering)

    positions = local_rows(jnp.broadcast_to(jnp.arange(indices.shape[-1]),
                                            indices.shape[:1] + indices.shape[2:]), data_shards)

    def one(state, t):
        batch = jax.lax.dynamic_index_in_dim(indices, t, 1, keepdims=False)  # [M, B]
        rows = jax.lax.dynamic_index_in_dim(weights, t, 1, keepdims=False)
        step_keys = jax.vmap(lambda key, step: jax.random.fold_in(
            jax.random.fold_in(key, contract.STEP_STREAM), step))(state.rng, state.step)
        return step_fn(state, gather_batch(images, batch, data_shards),
                       local_rows(rows, data_shards), positions, step_keys)

    if num_steps == 1:  # no loop: XLA:CPU runs convolutions inside loops slowly
        state, metrics = one(state, first)
        return state, jax.tree_util.tree_map(lambda x: x[:, None], metrics)
    state, metrics = jax.lax.scan(one, state, first + jnp.arange(num_steps))
    return state, jax.tree_util.tree_map(lambda x: x.swapaxes(0, 1), metrics)


@functools.partial(jax.jit, static_argnames="method", donate_argnums=0)
def _after_epoch(state, metrics, epoch, *, method):
    """The method's edit of each member's state after an epoch, from its epoch means."""
    means = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=1), metrics)
    keys = jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, contract.EPOCH_STREAM),
                                                   epoch))(state.rng)
    return jax.vmap(method.after_epoch)(state, means, keys)


def _chunk_batches(state, rows, epoch, *, batch_size, layout):
    batches = programs.distribute(plan_epoch, layout, (mesh.MEMBERS, mesh.REPLICATED),
                                  mesh.MEMBERS, num_images=rows.count,
                                  batch_size=batch_size)
    return batches(state, jnp.int32(epoch))


def train_epoch(state, rows, epoch, *, method, batch_size, plan, layout=None):
    """One epoch for all members: the new state and per-step metrics [M, steps]
    (`run_epoch` from its start, without stopping)."""
    state, metrics, _ = run_epoch(state, rows, epoch, method=method, batch_size=batch_size,
                                  plan=plan, layout=layout)
    return state, metrics


def run_epoch(state, rows, epoch, *, method, batch_size, plan, layout=None, start=0,
              earlier=None, stop=None):
    """Steps `start` .. the end of one epoch for all members: (new state, per-step metrics
    [M, steps of the epoch so far], the position reached in the epoch).

    `rows` is the training set placed on the layout (`mesh.place_rows`; a host array
    is placed here), and so is `state` (on one process a state elsewhere is placed here).
    Members go through in chunks of `plan.chunk` per device, every chunk one program
    further before the next program starts, so all members stand at one position.
    `earlier` holds the metrics of steps 0 .. start - 1 (host arrays [M, start]) when an
    epoch is resumed mid-way. `stop()` is asked before every program; when it says
    True the epoch ends there, unfinished (position < steps of the epoch), and the
    method's edit after an epoch is not applied.
    """
    layout = layout or mesh.single_device()
    if not isinstance(rows, mesh.Rows):
        rows = mesh.place_rows(np.asarray(rows), layout)
    if jax.process_count() == 1:  # a state not yet on the layout is placed once, here,
        state = mesh.place(state, layout, mesh.MEMBERS)  # not recompiled for later
    size = execution.members_per_program(plan, layout)
    parts = (list(ensemble.chunks(state, size)) if 0 < size < ensemble.num_members(state)
             else [state])
    batches = [_chunk_batches(part, rows, epoch, batch_size=batch_size, layout=layout)
               for part in parts]
    total = batches[0][0].shape[1]
    per_program = total if plan.loop == "scan" else 1
    if plan.loop == "scan" and plan.steps_per_program:
        per_program = min(plan.steps_per_program, total)
    position, collected = start, []
    while position < total:
        if stop is not None and stop():
            break
        num_steps = min(per_program, total - position)
        step = programs.distribute(
            device_steps, layout, (mesh.MEMBERS, mesh.ROWS, mesh.MEMBERS,
                                   mesh.MEMBERS, mesh.REPLICATED), mesh.MEMBERS,
            donate=plan.donate, method=method, lowering=plan.lowering, num_steps=num_steps,
            data_shards=layout.data)
        outputs = [step(part, rows.images, indices, weights, jnp.int32(position))
                   for part, (indices, weights) in zip(parts, batches, strict=True)]
        parts = [part for part, _ in outputs]
        collected.append(outputs[0][1] if len(outputs) == 1 else ensemble.concatenate(
            [metrics for _, metrics in outputs]))
        position += num_steps
    state = parts[0] if len(parts) == 1 else ensemble.concatenate(parts)
    if earlier:
        collected.insert(0, mesh.place(earlier, layout, mesh.MEMBERS))
    if not collected:
        return state, {}, position
    metrics = collected[0] if len(collected) == 1 else ensemble.concatenate(collected, 1)
    if position == total and method.after_epoch:
        state = _after_epoch(state, metrics, jnp.int32(epoch), method=method)
    return state, metrics, position

