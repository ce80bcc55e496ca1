"""Training and evaluation: the train state, the pure steps and the driver.

Every run trains an ensemble of M members (M = 1 for a single model) whose
train state carries a leading member axis (`ensemble.py`); the per-member
step is written for one model and lifted over members. Each epoch draws a
per-member permutation of the device-resident uint8 train set. The last
partial batch is kept, padded to the batch size with zero-weight rows that
enter neither the loss nor the BatchNorm statistics, so every step has one
shape and the result equals training on the unpadded batch. How steps and
members are compiled on this backend is an `execution.Plan`.
"""

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from ae4ad_jax import (
    batching,
    checkpointing,
    config_checks,
    ensemble,
    evaluate,
    execution,
    input_pipeline,
    manifest,
    methods,
    models,
    report,
    run_outputs,
    sharding,
)
from ae4ad_jax.errors import UserError

# Independent random streams derived from a member's key.
DATA_STREAM, STEP_STREAM, EPOCH_STREAM = 0, 1, 3


class TrainState(train_state.TrainState):
    batch_stats: Any
    rng: jax.Array  # the member's raw uint32[2] key
    latent_mask: jax.Array  # [max(d)]: 1 for the member's own latent units
    entropy_weight: jax.Array  # lambda of the latent-entropy term of the loss
    rate_weight: jax.Array  # lambda of the rate term (bits per image) of the loss
    constants: Any  # frozen variable collections of the method (not trained, not saved)


def create_optimizer(config) -> optax.GradientTransformation:
    """The reference's Adam; with the learned rate on, the rate's density model has its own
    learning rate (`rate.learning_rate`: it must fit within a short schedule)."""
    o = config.optim
    adam = optax.adam(config.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
    if not config.rate.enabled:
        return adam
    density = optax.adam(config.rate.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
    return optax.multi_transform({"model": adam, "density": density}, _density_labels)


def _density_labels(params):
    def label(path, _):
        names = [str(getattr(key, "key", "")) for key in path]
        return "density" if models.LATENT_UNITS + "_rate" in names else "model"

    return jax.tree_util.tree_map_with_path(label, params)


@functools.cache
def _init_fn(model, shape):
    def init(key):
        init_key, state_key = jax.random.split(key)
        variables = model.init(init_key, jnp.zeros(shape, jnp.float32), train=False,
                               row_keys=jnp.zeros((shape[0], 2), jnp.uint32))
        return variables["params"], variables.get("batch_stats", {}), state_key

    return jax.jit(init)


def create_train_state(config, method, members) -> TrainState:
    """All members stacked along a leading axis; each initialised as a standalone model."""
    width = max(m["latent_size"] for m in members)
    model = method.create_model(width)
    tx = create_optimizer(config)
    constants = method.frozen_variables()
    shape = (1, config.image_size, config.image_size, config.channels)
    states = []
    for m in members:
        standalone = method.create_model(m["latent_size"])
        params, batch_stats, key = _init_fn(standalone, shape)(jax.random.PRNGKey(m["seed"]))
        states.append(TrainState.create(
            apply_fn=model.apply, params=ensemble.resize_latent(params, width), tx=tx,
            batch_stats=ensemble.resize_latent(batch_stats, width), rng=key,
            constants=constants,
            latent_mask=ensemble.latent_mask(m["latent_size"], width),
            entropy_weight=jnp.float32(m.get("entropy_weight", 0.0)),
            rate_weight=jnp.float32(m.get("rate_weight", 0.0))))
    return ensemble.stack(states)


def train_step(state: TrainState, images, weights, positions, rng, *, method, axis_name=None):
    """One optimiser step of one member on its rows of the batch: `images` [B, H, W, C]
    float, `weights` [B] (0 for padding rows), `positions` [B] the rows' places in the
    global batch (their random streams).

    With `axis_name`, the batch is split over that device axis and the step is the same
    function of the whole batch: the loss is averaged over the global count of real
    rows, BatchNorm pools its statistics, the entropy term sees every device's codes,
    and gradients are summed across devices.
    """
    batch = methods.Batch(weights, rng, methods.row_keys(rng, positions), state.latent_mask,
                          state.entropy_weight, state.rate_weight, axis_name)
    inputs = method.corrupt(method.settings, images, batch) if method.corrupt else images
    model = method.create_model(state.latent_mask.shape[-1], axis_name)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats, **state.constants}
        outputs, updates = model.apply(variables, inputs, train=True, mask=weights,
                                       latent_mask=state.latent_mask,
                                       row_keys=batch.keys(methods.MODEL_STREAM),
                                       mutable=["batch_stats"])
        share, shares, terms = methods.objective(method, outputs, images, batch)
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
    data_keys = jax.vmap(jax.random.fold_in, (0, None))(state.rng, DATA_STREAM)
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
        return input_pipeline.to_float(images[indices])
    block = images.shape[0]
    local = indices - jax.lax.axis_index(sharding.DATA) * block
    held = (local >= 0) & (local < block)
    rows = input_pipeline.to_float(images[jnp.clip(local, 0, block - 1)])
    rows = jnp.where(held[..., None, None, None], rows, 0.0)
    return jax.lax.psum_scatter(rows, sharding.DATA, scatter_dimension=1, tiled=True)


def local_rows(values, data_shards: int):
    """This device's slice [M, B / data_shards] of per-row `values` [M, B]."""
    if data_shards == 1:
        return values
    size = values.shape[1] // data_shards
    return jax.lax.dynamic_slice_in_dim(values, jax.lax.axis_index(sharding.DATA) * size,
                                        size, axis=1)


def device_steps(state, images, indices, weights, first, *, method, lowering, num_steps,
                 data_shards):
    """Steps first .. first + num_steps - 1 of this device's members (the per-device
    program): `images` this device's rows, `indices` and `weights` [M, steps, B]. Returns
    the state and metrics [M, num_steps]."""
    axis_name = sharding.DATA if data_shards > 1 else None
    step_fn = ensemble.over_members(functools.partial(train_step, method=method,
                                                      axis_name=axis_name), lowering)

    positions = local_rows(jnp.broadcast_to(jnp.arange(indices.shape[-1]),
                                            indices.shape[:1] + indices.shape[2:]), data_shards)

    def one(state, t):
        batch = jax.lax.dynamic_index_in_dim(indices, t, 1, keepdims=False)  # [M, B]
        rows = jax.lax.dynamic_index_in_dim(weights, t, 1, keepdims=False)
        step_keys = jax.vmap(lambda key, step: jax.random.fold_in(
            jax.random.fold_in(key, STEP_STREAM), step))(state.rng, state.step)
        return step_fn(state, gather_batch(images, batch, data_shards),
                       local_rows(rows, data_shards), positions, step_keys)

    if num_steps == 1:  # no loop: XLA:CPU runs convolutions inside loops slowly
        state, metrics = one(state, first)
        return state, jax.tree_util.tree_map(lambda x: x[:, None], metrics)
    state, metrics = jax.lax.scan(one, state, first + jnp.arange(num_steps))
    return state, jax.tree_util.tree_map(lambda x: x.swapaxes(0, 1), metrics)


def _train_epoch_chunk(state, rows, epoch, *, method, batch_size, plan, layout):
    batches = sharding.distribute(plan_epoch, layout, (sharding.MEMBERS, sharding.REPLICATED),
                                  sharding.MEMBERS, num_images=rows.count,
                                  batch_size=batch_size)
    indices, weights = batches(state, jnp.int32(epoch))
    num_steps = indices.shape[1] if plan.loop == "scan" else 1
    step = sharding.distribute(
        device_steps, layout, (sharding.MEMBERS, sharding.ROWS, sharding.MEMBERS,
                               sharding.MEMBERS, sharding.REPLICATED), sharding.MEMBERS,
        donate=plan.donate, method=method, lowering=plan.lowering, num_steps=num_steps,
        data_shards=layout.data)
    step_metrics = []
    for first in range(0, indices.shape[1], num_steps):
        state, metrics = step(state, rows.images, indices, weights, jnp.int32(first))
        step_metrics.append(metrics)
    metrics = step_metrics[0] if len(step_metrics) == 1 else ensemble.concatenate(
        step_metrics, 1)
    if method.after_epoch:
        state = _after_epoch(state, metrics, jnp.int32(epoch), method=method)
    return state, metrics


@functools.partial(jax.jit, static_argnames="method", donate_argnums=0)
def _after_epoch(state, metrics, epoch, *, method):
    """The method's edit of each member's state after an epoch, from its epoch means."""
    means = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=1), metrics)
    keys = jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, EPOCH_STREAM),
                                                   epoch))(state.rng)
    return jax.vmap(method.after_epoch)(state, means, keys)


def _members_per_program(plan, layout) -> int:
    """Members in one program over the whole mesh (0: all): `plan.chunk` per device."""
    return plan.chunk * layout.members


def train_epoch(state, rows, epoch, *, method, batch_size, plan, layout=None):
    """One epoch for all members: the new state and per-step metrics [M, steps].

    `rows` is the training set placed on the layout (`sharding.place_rows`; a host array
    is placed here). Members go through in chunks of `plan.chunk` per device.
    """
    layout = layout or sharding.single_device()
    if not isinstance(rows, sharding.Rows):
        rows = sharding.place_rows(np.asarray(rows), layout)
    return ensemble.in_chunks(functools.partial(
        _train_epoch_chunk, rows=rows, epoch=epoch, method=method, batch_size=batch_size,
        plan=plan, layout=layout), state, _members_per_program(plan, layout))


def member_step_bytes(state, config, method) -> int:
    """Device bytes one member's train step needs (XLA's memory analysis), for chunking."""
    one = jax.device_put(sharding.to_host(ensemble.member(state, 0)), jax.local_devices()[0])
    shape = (config.batch_size, config.image_size, config.image_size, config.channels)
    step = jax.jit(functools.partial(train_step, method=method))
    compiled = step.lower(one, jnp.zeros(shape), jnp.ones(shape[0]), jnp.arange(shape[0]),
                          one.rng).compile()
    analysis = compiled.memory_analysis()
    return int(analysis.temp_size_in_bytes + 3 * analysis.argument_size_in_bytes)


def device_scores(members, images, *, method, batch_size, with_maps, lowering, data_shards):
    """This device's members' scores of its rows (the per-device program)."""
    first = jax.lax.axis_index(sharding.DATA) * images.shape[0] if data_shards > 1 else 0
    return evaluate.score_images(members, images, jnp.int32(first), method=method,
                                 batch_size=batch_size, with_maps=with_maps, lowering=lowering)


def score_members(state, rows, *, config, method, plan, layout=None, with_maps=False):
    """Every member's scores of `rows` (placed, or a host uint8 array), on the host:
    arrays [M, N] (maps [M, N, H, W])."""
    layout = layout or sharding.single_device()
    if not isinstance(rows, sharding.Rows):
        rows = sharding.place_rows(np.asarray(rows), layout)
    score = sharding.distribute(
        device_scores, layout, (sharding.MEMBERS, sharding.ROWS), sharding.MEMBER_ROWS,
        method=method, with_maps=with_maps, lowering=plan.lowering, data_shards=layout.data,
        batch_size=batching.num_batches(config.eval.batch_size, layout.data))

    def score_chunk(state):
        return score(evaluate.scoring_weights(state), rows.images)

    scores = sharding.to_host(ensemble.in_chunks(score_chunk, state,
                                                 _members_per_program(plan, layout)))
    return jax.tree_util.tree_map(lambda x: x[:, :rows.count], scores)


def evaluate_members(state, members, data, placed, config, method, plan, layout):
    """Scores train, val and test splits with every member; one metrics row per member,
    and the scores behind them (`ensemble` arrays [M, N]: "test" (absent without a test
    split) and "normal", the normal images that set the thresholds)."""
    score = functools.partial(score_members, state, config=config, method=method, plan=plan,
                              layout=layout)
    test = (score(placed["test"], with_maps=data.test_masks is not None)
            if "test" in placed else None)
    train = score(placed["train"])
    val = score(placed["val"]) if len(data.val_images) else None
    normal = (val if val is not None else train)["score"]
    rows = []
    for m, member in enumerate(members):
        row = evaluate.compute_metrics(None if test is None else ensemble.member(test, m),
                                       ensemble.member(train, m),
                                       data.test_labels, data.test_masks,
                                       member["latent_size"], tuple(config.entropy_estimators),
                                       config.entropy_bootstrap)
        if val is not None:
            row["recon_error_val_normal"] = float(val["mse"][m].mean())
            if "bits" in val:
                row["rate_bits_val_normal"] = float(val["bits"][m].mean())
        row.update(evaluate.threshold_metrics(
            normal[m], None if test is None else test["score"][m], data.test_labels,
            config.eval.false_positive_rate, val is not None))
        rows.append(row)
    scores = {"normal": normal}
    if test is not None:
        scores["test"] = test["score"]
    return rows, scores


def _check_finite(losses, epoch, steps_per_epoch, last_saved, workdir):
    bad = ~np.isfinite(losses)
    if not bad.any():
        return
    step_in_epoch, member = np.argwhere(bad.T)[0]  # the earliest step
    step = (epoch - 1) * steps_per_epoch + int(step_in_epoch) + 1
    kept = (f"the last good checkpoint (epoch {last_saved}) is kept in {workdir}/checkpoints"
            if last_saved else "no checkpoint had been written yet")
    raise UserError(
        f"Training diverged: the loss of member {member} became {losses[member, step_in_epoch]} "
        f"at step {step} (epoch {epoch}); {kept}. Lower learning_rate or check the data.")


def _is_eval_epoch(epoch, config):
    return epoch == 1 or epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs


def _is_checkpoint_epoch(epoch, config):
    return (_is_eval_epoch(epoch, config) or epoch % config.checkpoint_every_epochs == 0)


class EpochClock:
    """Time left from the epochs run so far, evaluations and saves included. The first
    epoch of a process also compiles, so it is left out once a second has run."""

    def __init__(self, start_epoch):
        self.start_epoch, self.start, self.ends = start_epoch, time.time(), []

    def epoch_done(self):
        self.ends.append(time.time())

    def seconds_left(self, epoch, num_epochs):
        """At the end of `epoch` (before its evaluation): the mean time of the epochs
        since the first (or of the first alone), times the epochs left."""
        now = time.time()
        if not self.ends:
            per_epoch = now - self.start
        else:
            per_epoch = (now - self.ends[0]) / (epoch - self.start_epoch - 1)
        return per_epoch * (num_epochs - epoch)


def _load_for_run(config, workdir, eval_only, data=None):
    """Everything a run needs before its first step; all user-input checks happen here.

    Process 0 prepares the workdir and the dataset; the others wait, then read it.
    `data` (an `input_pipeline.Data` in memory) replaces the config's dataset.
    """
    config_checks.validate_config(config)
    members = ensemble.members_from_config(config)
    layout = sharding.create_layout(config, len(members))
    if sharding.is_primary():
        run_outputs.prepare_workdir(workdir, config, must_exist=eval_only)
        if data is None:
            input_pipeline.prepare(config)
    sharding.barrier("workdir and dataset prepared")
    method = methods.create(config)
    if data is None:
        data = input_pipeline.load(config)
    config_checks.check_data(data, config)
    placed = {split: sharding.place_rows(images, layout) for split, images in
              (("train", data.train_images), ("val", data.val_images),
               ("test", data.test_images)) if len(images)}
    return method, members, layout, data, placed


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       eval_only: bool = False, data=None) -> dict:
    """Trains (resuming from the workdir's last checkpoint) and evaluates; returns the summary.

    With `eval_only`, restores the last checkpoint and evaluates it without training.
    `data` (arrays in memory, `input_pipeline.Data`) replaces the config's dataset; without
    test images a run measures its training side and sets thresholds, with no test metrics.
    On many processes every process runs this; process 0 writes the outputs.
    """
    start_time = time.time()
    config = methods.resolve_config(config)
    method, members, layout, data, placed = _load_for_run(config, workdir, eval_only, data)
    state = sharding.place(create_train_state(config, method, members), layout,
                           sharding.MEMBERS)
    manager = checkpointing.create_manager(workdir)
    state, start_epoch = checkpointing.restore_or_keep(manager, state, workdir)
    if eval_only and start_epoch == 0:
        raise UserError(f"--eval_only needs a checkpoint, and {workdir}/checkpoints has none.")
    writer = run_outputs.Writer(workdir, members, start_epoch, enabled=sharding.is_primary())
    steps_per_epoch = batching.num_batches(data.train_images.shape[0], config.batch_size)
    plan = execution.fit_to_memory(execution.plan_execution(config),
                                   len(members) // layout.members,
                                   functools.partial(member_step_bytes, state, config, method))
    run_outputs.log(f"{len(members)} member(s) on {layout.members * layout.data} device(s) "
                    f"({layout.members} x {layout.data} member x data, {layout.form}), "
                    f"{jax.process_count()} process(es).")
    last_saved, rows = start_epoch, None
    clock = EpochClock(start_epoch)
    try:
        for epoch in range(start_epoch + 1, 1 if eval_only else config.num_epochs + 1):
            epoch_start = time.time()
            state, step_metrics = train_epoch(state, placed["train"], epoch, method=method,
                                              batch_size=config.batch_size, plan=plan,
                                              layout=layout)
            losses = sharding.to_host(step_metrics["loss"])  # [M, steps]
            _check_finite(losses, epoch, steps_per_epoch, last_saved, workdir)
            seconds = time.time() - epoch_start
            writer.write_train(epoch, losses.mean(axis=1),
                               data.train_images.shape[0] * len(members) / seconds,
                               config.num_epochs, clock.seconds_left(epoch, config.num_epochs))
            rows = None
            if _is_eval_epoch(epoch, config):
                rows, scores = evaluate_members(state, members, data, placed, config, method,
                                                plan, layout)
                writer.write_eval(epoch, rows)
            if _is_checkpoint_epoch(epoch, config):
                checkpointing.save(manager, epoch, state)
                last_saved = epoch
            clock.epoch_done()
    finally:  # a save in flight completes even when training stops with an error
        manager.wait_until_finished()
    if rows is None:
        run_outputs.log(f"Evaluating the checkpoint of epoch {last_saved}.")
        rows, scores = evaluate_members(state, members, data, placed, config, method, plan,
                                        layout)
    first = sharding.to_host(ensemble.member(state, 0, keep_axis=True))
    summary = run_outputs.summarize(config, members, rows, first, time.time() - start_time)
    if sharding.is_primary():
        summary["manifest"] = manifest.create_manifest(data)
        run_outputs.write_summary(workdir, summary)
        run_outputs.write_thresholds(workdir, config, members, rows, last_saved)
        run_outputs.write_scores(workdir, scores, data.test_labels)
        if len(data.test_images):
            run_outputs.write_examples(workdir, first, data, config, method)
            report.write_report([workdir])
            writer.write_report_images(os.path.join(workdir, "report"), last_saved)
    writer.close()
    sharding.barrier("outputs written")
    return summary
