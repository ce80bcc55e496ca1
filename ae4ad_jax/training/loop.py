"""The driver: a run from its config to its workdir's files.

Every run trains an ensemble of M members (M = 1 for a single model) whose train
state carries a leading member axis (`state.py`); the per-member step is written
for one model and lifted over members (`step.py`). The driver restores or
initialises the state, trains, evaluates (`evaluation/`), checkpoints and writes
the run's files (`runs/`) and its report (`reporting/`).
"""

import contextlib
import functools
import os
import time

import jax
import ml_collections
import numpy as np

from ae4ad_jax.config import checks
from ae4ad_jax.core import batching, hosts
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.logs import log
from ae4ad_jax.data import pipeline
from ae4ad_jax.evaluation import evaluator, scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.nets.layers import count_params
from ae4ad_jax.parallel import ensemble, execution, mesh
from ae4ad_jax.reporting import build, figures, page
from ae4ad_jax.runs import checkpoints, lock, manifest, results
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.training import memory, preemption
from ae4ad_jax.training.state import create_train_state
from ae4ad_jax.training.step import run_epoch


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


def _stop(stop, manager, workdir, state, step_metrics, epoch, position, steps_per_epoch,
          last_saved):
    """Saves where a stopped run stands and raises `preemption.Stopped`."""
    stop.saving = True
    if position == 0 and epoch == 1:
        where, saved = "before its first step", "nothing (there was nothing to save)"
    elif position == 0:  # between epochs: the previous epoch's checkpoint is the stop's
        if last_saved != epoch - 1:
            checkpoints.save(manager, epoch - 1, state)
        checkpoints.wait(manager)
        where, saved = f"after epoch {epoch - 1}", os.path.join(
            str(manager.directory), str(epoch - 1))
    else:
        step = (epoch - 1) * steps_per_epoch + position
        saved = checkpoints.save_stopped(workdir, state, step,
                                         mesh.to_host(step_metrics))
        where = f"at step {position} of {steps_per_epoch} of epoch {epoch} (step {step})"
    raise preemption.Stopped(
        f"Stopped by {stop.signal_name} {where}, {stop.seconds_since_signal():.1f} s after "
        f"{stop.since}; the state is saved in {saved}. Run the same command to resume there "
        f"(exit status {preemption.REQUEUE_STATUS}: requeue).")


def _load_for_run(config, workdir, eval_only, data=None):
    """Everything a run needs before its first step; all user-input checks happen here.

    Process 0 prepares the workdir and the dataset; the others wait, then read it.
    `data` (a `pipeline.Data` in memory) replaces the config's dataset.
    """
    members = ensemble.member_hparams(config)
    layout = mesh.create_layout(config, len(members))
    if hosts.is_primary():
        workdir_lib.prepare_workdir(workdir, config, must_exist=eval_only)
        if data is None:
            pipeline.prepare(config)
    hosts.barrier("workdir and dataset prepared")
    method = registry.create(config)
    if data is None:
        data = pipeline.load(config)
    checks.check_data(data, config)
    placed = {split: mesh.place_rows(images, layout) for split, images in
              (("train", data.train_images), ("val", data.val_images),
               ("test", data.test_images)) if len(images)}
    return method, members, layout, data, placed


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       eval_only: bool = False, data=None, take_over_lock: bool = False) -> dict:
    """Trains (resuming from the workdir's last checkpoint) and evaluates; returns the summary.

    With `eval_only`, restores the last checkpoint and evaluates it without training.
    `data` (arrays in memory, `pipeline.Data`) replaces the config's dataset; without
    test images a run measures its training side and sets thresholds, with no test metrics.
    On many processes every process runs this; process 0 writes the outputs and holds the
    workdir's lock (`runs/lock.py`; `take_over_lock` takes over another host's).
    SIGTERM or SIGINT stops the run at a step boundary with a checkpoint and raises
    `preemption.Stopped` (`training/preemption.py`).
    """
    checks.validate_config(config)
    config = pipeline.resolve_channels(registry.resolve_config(config),
                                       None if data is None else data.train_images)
    execution.use_compilation_cache(config.compilation_cache)
    with workdir_lock(workdir, take_over_lock, eval_only), preemption.Stop() as stop:
        return _train_and_evaluate(config, workdir, eval_only, data, stop)


@contextlib.contextmanager
def workdir_lock(workdir, take_over=False, must_exist=False):
    """Holds the workdir's lock (`runs/lock.py`), taken by process 0; every process learns
    whether it got it. Nothing is locked in a workdir that must exist and does not."""
    path, problem = None, ""
    if hosts.is_primary() and not (must_exist and not os.path.isdir(workdir or ".")):
        try:
            path = lock.acquire(workdir, take_over=take_over)
        except UserError as error:
            problem = str(error)
    problem = hosts.broadcast_text(problem)
    if problem:
        raise UserError(problem if hosts.is_primary()
                        else f"Process 0 could not lock the workdir: {problem}")
    try:
        yield
    finally:
        if path:
            lock.release(path)


def _train_and_evaluate(config, workdir, eval_only, data, stop):
    start_time = time.time()
    method, members, layout, data, placed = _load_for_run(config, workdir, eval_only, data)
    state = mesh.place(create_train_state(config, method, members), layout,
                           mesh.MEMBERS)
    steps_per_epoch = batching.num_batches(data.train_images.shape[0], config.batch_size)
    manager = checkpoints.create_manager(workdir, config.checkpoints_to_keep)
    state, start_epoch, position, earlier, stopped = _resume_point(
        manager, state, workdir, eval_only, steps_per_epoch, layout)
    writer = results.Writer(workdir, members, start_epoch, enabled=hosts.is_primary())
    plan = _plan(config, state, method, members, layout, placed, data)
    last_saved, rows = start_epoch, None
    clock = EpochClock(start_epoch)
    try:
        for epoch in range(start_epoch + 1, 1 if eval_only else config.num_epochs + 1):
            epoch_start = time.time()
            state, step_metrics, position = run_epoch(
                state, placed["train"], epoch, method=method, batch_size=config.batch_size,
                plan=plan, layout=layout, start=position, earlier=earlier,
                stop=stop.requested)
            if position < steps_per_epoch:
                _stop(stop, manager, workdir, state, step_metrics, epoch, position,
                      steps_per_epoch, last_saved)
            losses = mesh.to_host(step_metrics["loss"])  # [M, steps]
            _check_finite(losses, epoch, steps_per_epoch, last_saved, workdir)
            seconds = time.time() - epoch_start
            writer.write_train(epoch, losses.mean(axis=1),
                               data.train_images.shape[0] * len(members) / seconds,
                               config.num_epochs, clock.seconds_left(epoch, config.num_epochs))
            rows = None
            if _is_eval_epoch(epoch, config):
                rows, scores, models = evaluator.evaluate_members(
                    scoring.scoring_weights(state), members, data, placed, config, method,
                    plan, layout)
                writer.write_eval(epoch, rows)
            if _is_checkpoint_epoch(epoch, config):
                stopped = _save(manager, epoch, state, workdir, stopped)
                last_saved = epoch
            position, earlier = 0, None
            clock.epoch_done()
    finally:  # a save in flight completes even when training stops with an error
        checkpoints.wait(manager)
    if rows is None:
        log(f"Evaluating the checkpoint of epoch {last_saved}.")
        rows, scores, models = evaluator.evaluate_members(
            scoring.scoring_weights(state), members, data, placed, config, method, plan,
            layout)
    summary = _write_outputs(config, workdir, members, (rows, scores, models), state, data,
                             method, last_saved, time.time() - start_time, writer)
    writer.close()
    hosts.barrier("outputs written")
    return summary


def _resume_point(manager, state, workdir, eval_only, steps_per_epoch, layout):
    """(state, the last finished epoch, the position in the next, the metrics of its steps
    before that, the stopped run's checkpoint or None): from the latest checkpoint, or a
    stopped run's mid-epoch one when it is newer."""
    state, start_epoch = checkpoints.restore_or_keep(manager, state, workdir)
    position, earlier = 0, None  # where the first epoch starts, its metrics before that
    stopped = checkpoints.restore_stopped(workdir, state, start_epoch * steps_per_epoch)
    if stopped is not None and not eval_only:
        state, step, earlier = stopped
        start_epoch, position = divmod(step, steps_per_epoch)
        state = mesh.place(state, layout, mesh.MEMBERS)
        log(f"Resuming epoch {start_epoch + 1} at step {position + 1} of {steps_per_epoch} "
            "from the checkpoint of a stopped run.")
    if eval_only and start_epoch == 0:
        raise UserError(f"--eval_only needs a checkpoint, and {workdir}/checkpoints has none.")
    return state, start_epoch, position, earlier, stopped


def _plan(config, state, method, members, layout, placed, data):
    """The execution plan, its chunks fitted to the devices' memory; logs the layout."""
    plan, per_device = execution.plan_execution(config), len(members) // layout.members
    plan = execution.fit_to_memory(plan, per_device, functools.partial(
        memory.memory_need, state, config, method, plan,
        {name: rows.images.addressable_shards[0].data.shape[0] for name, rows in placed.items()},
        data.test_masks is not None))
    log(f"{len(members)} member(s) on {layout.members * layout.data} device(s) "
        f"({layout.members} x {layout.data} member x data, {layout.form}), "
        f"{jax.process_count()} process(es); {execution.describe(plan, per_device)}.")
    return plan


def _save(manager, epoch, state, workdir, stopped):
    """Saves the epoch's checkpoint; a stopped run's mid-epoch one, now behind it, goes.
    Returns the stopped run's checkpoint that remains (None)."""
    checkpoints.save(manager, epoch, state)
    if stopped is not None:
        checkpoints.wait(manager)
        if hosts.is_primary():
            checkpoints.remove_stopped(workdir)
    return None


def _write_outputs(config, workdir, members, evaluation, state, data, method, last_saved,
                   seconds, writer):
    """summary.json, thresholds, code models, scores, examples and the report (process 0)
    of the last `evaluation` (rows, scores, code models); returns the summary."""
    rows, scores, models = evaluation
    first = mesh.to_host(ensemble.slice_members(state, 0, 1))
    summary = results.summarize(config, members, rows, count_params(ensemble.take(
        first.params, 0)), seconds)
    if not hosts.is_primary():
        return summary
    summary["manifest"] = manifest.create_manifest(data)
    results.write_summary(workdir, summary)
    results.write_thresholds(workdir, config.eval.false_positive_rate, members, rows,
                             last_saved)
    results.write_code_models(workdir, [model.to_arrays() for model in models])
    results.write_scores(workdir, scores, data.test_labels)
    if len(data.test_images):
        figures.write_examples(os.path.join(workdir, figures.EXAMPLES_FILE),
                               scoring.scoring_weights(first), data,
                               config.eval.num_examples, method)
        build.write_report([workdir])
        writer.write_images(page.report_images(os.path.join(workdir, build.REPORT_DIR)),
                            last_saved)
    return summary
