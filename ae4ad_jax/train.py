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
    entropy,
    evaluate,
    execution,
    input_pipeline,
    report,
    run_outputs,
)
from ae4ad_jax.errors import UserError
from ae4ad_jax.methods import METHODS

DATA_STREAM, STEP_STREAM = 0, 1  # independent random streams derived from a member's key


class TrainState(train_state.TrainState):
    batch_stats: Any
    rng: jax.Array  # the member's raw uint32[2] key
    latent_mask: jax.Array  # [max(d)]: 1 for the member's own latent units
    entropy_weight: jax.Array  # lambda of the latent-entropy term of the loss


def create_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    return optax.adam(config.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)


@functools.cache
def _init_fn(model, shape):
    def init(key):
        init_key, state_key = jax.random.split(key)
        variables = model.init(init_key, jnp.zeros(shape, jnp.float32), train=False)
        return variables["params"], variables["batch_stats"], state_key

    return jax.jit(init)


def create_train_state(config, method, members) -> TrainState:
    """All members stacked along a leading axis; each initialised as a standalone model."""
    width = max(m["latent_size"] for m in members)
    model = method.create_model(config, latent_size=width)
    tx = create_optimizer(config)
    shape = (1, config.image_size, config.image_size, config.channels)
    states = []
    for m in members:
        standalone = method.create_model(config, latent_size=m["latent_size"])
        params, batch_stats, key = _init_fn(standalone, shape)(jax.random.PRNGKey(m["seed"]))
        states.append(TrainState.create(
            apply_fn=model.apply, params=ensemble.resize_latent(params, width), tx=tx,
            batch_stats=batch_stats, rng=key,
            latent_mask=ensemble.latent_mask(m["latent_size"], width),
            entropy_weight=jnp.float32(m.get("entropy_weight", 0.0))))
    return ensemble.stack(states)


def train_step(state: TrainState, images, weights, rng, *, method, axis_name=None):
    """One optimiser step of one member: `images` [B, H, W, C] float, `weights` [B]."""

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        outputs, updates = state.apply_fn(variables, images, train=True, mask=weights,
                                          latent_mask=state.latent_mask,
                                          mutable=["batch_stats"])
        loss, aux = method.loss(outputs, images, weights, rng)
        latent_entropy = entropy.batch_renyi2(outputs["z"], weights, state.latent_mask)
        aux = {**aux, "reconstruction_loss": loss, "latent_entropy": latent_entropy}
        return loss + state.entropy_weight * latent_entropy, (updates["batch_stats"], aux)

    (loss, (batch_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        grads, loss = jax.lax.pmean((grads, loss), axis_name)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, {"loss": loss, **aux}


def epoch_batches(rng, epoch, num_images, batch_size):
    """A member's order for one epoch: indices and weights, both [steps, batch_size]."""
    order = jax.random.permutation(jax.random.fold_in(rng, epoch), num_images)
    return (batching.split_padded(order, batch_size),
            batching.split_padded(jnp.ones(num_images), batch_size))


def plan_epoch(state, epoch, num_images, batch_size):
    """Every member's batches for one epoch: indices and weights [M, steps, B]."""
    data_keys = jax.vmap(jax.random.fold_in, (0, None))(state.rng, DATA_STREAM)
    return jax.vmap(epoch_batches, (0, None, None, None))(data_keys, epoch, num_images,
                                                           batch_size)


def ensemble_step(state, train_images, indices, weights, *, method, lowering):
    """One step of every member on its own batch; `indices`, `weights` [M, B]."""
    images = input_pipeline.to_float(train_images[indices])  # [M, B, H, W, C]
    step_keys = jax.vmap(lambda key, step: jax.random.fold_in(
        jax.random.fold_in(key, STEP_STREAM), step))(state.rng, state.step)
    step_fn = ensemble.over_members(functools.partial(train_step, method=method), lowering)
    return step_fn(state, images, weights, step_keys)


def _compiled(fn, static_argnames):
    """`fn` jitted twice, by whether it donates its first argument (the train state)."""
    return {donate: jax.jit(fn, static_argnames=static_argnames,
                            donate_argnums=0 if donate else ()) for donate in (True, False)}


def _epoch_scan(state, train_images, epoch, *, method, batch_size, lowering):
    indices, weights = plan_epoch(state, epoch, train_images.shape[0], batch_size)

    def body(state, batch):
        return ensemble_step(state, train_images, *batch, method=method, lowering=lowering)

    state, metrics = jax.lax.scan(body, state, (indices.swapaxes(0, 1), weights.swapaxes(0, 1)))
    return state, jax.tree_util.tree_map(lambda x: x.swapaxes(0, 1), metrics)


def _batch_step(state, train_images, indices, weights, t, *, method, lowering):
    return ensemble_step(state, train_images, indices[:, t], weights[:, t], method=method,
                         lowering=lowering)


_epoch_scan_programs = _compiled(_epoch_scan, ("method", "batch_size", "lowering"))
_batch_step_programs = _compiled(_batch_step, ("method", "lowering"))
_plan_epoch = jax.jit(plan_epoch, static_argnames=("num_images", "batch_size"))


def _train_epoch_chunk(state, train_images, epoch, *, method, batch_size, plan):
    if plan.loop == "scan":
        return _epoch_scan_programs[plan.donate](state, train_images, epoch, method=method,
                                                 batch_size=batch_size, lowering=plan.lowering)
    indices, weights = _plan_epoch(state, epoch, train_images.shape[0], batch_size)
    step = _batch_step_programs[plan.donate]
    step_metrics = []
    for t in range(indices.shape[1]):
        state, metrics = step(state, train_images, indices, weights, t, method=method,
                              lowering=plan.lowering)
        step_metrics.append(metrics)
    return state, ensemble.stack(step_metrics, 1)


def train_epoch(state, train_images, epoch, *, method, batch_size, plan):
    """One epoch for all members: the new state and per-step metrics [M, steps].

    Members go through in chunks of `plan.chunk`, one chunk after another.
    """
    return ensemble.in_chunks(functools.partial(
        _train_epoch_chunk, train_images=train_images, epoch=epoch, method=method,
        batch_size=batch_size, plan=plan), state, plan.chunk)


def member_step_bytes(state, config, method) -> int:
    """Device bytes one member's train step needs (XLA's memory analysis), for chunking."""
    one = ensemble.member(state, 0)
    shape = (config.batch_size, config.image_size, config.image_size, config.channels)
    step = jax.jit(functools.partial(train_step, method=method))
    compiled = step.lower(one, jnp.zeros(shape), jnp.ones(shape[0]), one.rng).compile()
    analysis = compiled.memory_analysis()
    return int(analysis.temp_size_in_bytes + 3 * analysis.argument_size_in_bytes)


def score_members(state, images, *, config, method, plan, with_maps=False):
    """Every member's scores of `images` (device uint8): arrays [M, N] (maps [M, N, H, W])."""
    def score(state):
        members = {"variables": {"params": state.params, "batch_stats": state.batch_stats},
                   "latent_mask": state.latent_mask}
        return evaluate.score_images(members, images, method=method, apply_fn=state.apply_fn,
                                     batch_size=config.eval.batch_size, with_maps=with_maps,
                                     lowering=plan.lowering)

    return ensemble.in_chunks(score, state, plan.chunk)


def evaluate_members(state, members, data, device_data, config, method, plan):
    """Scores train, val and test splits with every member; one metrics row per member."""
    score = functools.partial(score_members, state, config=config, method=method, plan=plan)
    test = jax.device_get(score(device_data["test"], with_maps=data.test_masks is not None))
    train = jax.device_get(score(device_data["train"]))
    val = jax.device_get(score(device_data["val"])) if len(data.val_images) else None
    rows = []
    for m, member in enumerate(members):
        row = evaluate.compute_metrics(ensemble.member(test, m), ensemble.member(train, m),
                                       data.test_labels, data.test_masks,
                                       member["latent_size"], tuple(config.entropy_estimators))
        if val is not None:
            row["recon_error_val_normal"] = float(val["mse"][m].mean())
        rows.append(row)
    return rows


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


def _load_for_run(config, workdir, eval_only):
    """Everything a run needs before its first step; all user-input checks happen here."""
    config_checks.validate_config(config)
    run_outputs.prepare_workdir(workdir, config, must_exist=eval_only)
    method = METHODS[config.method]
    data = input_pipeline.load(config)
    config_checks.check_data(data, config)
    device_data = {"train": jax.device_put(data.train_images),
                   "val": jax.device_put(data.val_images),
                   "test": jax.device_put(data.test_images)}
    return method, data, device_data


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       eval_only: bool = False) -> dict:
    """Trains (resuming from the workdir's last checkpoint) and evaluates; returns the summary.

    With `eval_only`, restores the last checkpoint and evaluates it without training.
    """
    start_time = time.time()
    method, data, device_data = _load_for_run(config, workdir, eval_only)
    members = ensemble.members_from_config(config)
    state = create_train_state(config, method, members)
    manager = checkpointing.create_manager(workdir)
    state, start_epoch = checkpointing.restore_or_keep(manager, state, workdir)
    if eval_only and start_epoch == 0:
        raise UserError(f"--eval_only needs a checkpoint, and {workdir}/checkpoints has none.")
    writer = run_outputs.Writer(workdir, members, start_epoch)
    steps_per_epoch = batching.num_batches(data.train_images.shape[0], config.batch_size)
    plan = execution.fit_to_memory(execution.plan_execution(config), len(members),
                                   functools.partial(member_step_bytes, state, config, method))
    last_saved, rows = start_epoch, None
    try:
        for epoch in range(start_epoch + 1, 1 if eval_only else config.num_epochs + 1):
            epoch_start = time.time()
            state, step_metrics = train_epoch(state, device_data["train"], epoch, method=method,
                                              batch_size=config.batch_size, plan=plan)
            losses = np.asarray(step_metrics["loss"])  # [M, steps]
            _check_finite(losses, epoch, steps_per_epoch, last_saved, workdir)
            seconds = time.time() - epoch_start
            writer.write_train(epoch, losses.mean(axis=1),
                               data.train_images.shape[0] * len(members) / seconds)
            rows = None
            if _is_eval_epoch(epoch, config):
                rows = evaluate_members(state, members, data, device_data, config, method, plan)
                writer.write_eval(epoch, rows)
            if _is_checkpoint_epoch(epoch, config):
                checkpointing.save(manager, epoch, state)
                last_saved = epoch
    finally:  # a save in flight completes even when training stops with an error
        manager.wait_until_finished()
    if rows is None:
        run_outputs.log(f"Evaluating the checkpoint of epoch {last_saved}.")
        rows = evaluate_members(state, members, data, device_data, config, method, plan)
    run_outputs.write_examples(workdir, state, data, config, method)
    summary = run_outputs.write_summary(workdir, config, members, rows, state,
                                      time.time() - start_time)
    report.write_report([workdir])
    writer.close()
    return summary
