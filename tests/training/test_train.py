"""The trainer: exactness of padded batches, lowering choices, a finished run, divergence."""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.methods import registry
from ae4ad_jax.nets import layers
from ae4ad_jax.parallel import execution
from ae4ad_jax.training import loop, step
from ae4ad_jax.training import state as state_lib


def _setup(config, seeds=(0,)):
    method = registry.create(config)
    members = [{"latent_size": config.latent_size, "seed": seed} for seed in seeds]
    return method, state_lib.create_train_state(config, method, members)


def _plan(lowering="unroll", loop="host", chunk=1, donate=False):
    return execution.Plan(kernels="cpu", lowering=lowering, loop=loop, donate=donate,
                          chunk=chunk)


def _member(state, m=0):
    return jax.tree_util.tree_map(lambda x: x[m], state)


def _with_sgd(state, lr):
    """Plain SGD, so parameter changes are the gradients themselves. Adam's first steps are
    about lr * sign(g) and would magnify rounding noise in near-zero gradients."""
    sgd = optax.sgd(lr)
    return state.replace(tx=sgd, opt_state=sgd.init(state.params))


def _assert_same_update(before, a, b):
    """Two updates of the same state agree to float tolerance.

    The tolerance is relative to the largest change of any parameter: biases that feed a
    BatchNorm have a zero true gradient, so their changes are rounding noise alone.
    """
    leaves = [jax.tree_util.tree_leaves((s.params, s.batch_stats)) for s in (before, a, b)]
    changes = [(np.asarray(xa) - np.asarray(x0), np.asarray(xb) - np.asarray(x0))
               for x0, xa, xb in zip(*leaves, strict=True)]
    scale = max(np.abs(change_a).max() for change_a, _ in changes)
    assert scale > 0
    for change_a, change_b in changes:
        np.testing.assert_allclose(change_b, change_a, atol=1e-3 * scale, rtol=1e-3)


def test_padded_batch_equals_unpadded_batch(test_config):
    method, state = _setup(test_config)
    state = _with_sgd(_member(state), 1.0)
    images = jax.random.uniform(jax.random.PRNGKey(1), (5, 32, 32, 1), minval=-1, maxval=1)
    padded = jnp.concatenate([images, jnp.ones((3, 32, 32, 1))])
    weights = jnp.asarray([1.0] * 5 + [0.0] * 3)
    one_step = jax.jit(functools.partial(step.train_step, method=method))
    key = jax.random.PRNGKey(0)
    plain, plain_metrics = one_step(state, images, jnp.ones(5), jnp.arange(5), key)
    masked, masked_metrics = one_step(state, padded, weights, jnp.arange(8), key)
    np.testing.assert_allclose(plain_metrics["loss"], masked_metrics["loss"], rtol=1e-6)
    _assert_same_update(state, plain, masked)


def test_epoch_covers_every_image_once_per_member():
    indices, weights = step.epoch_batches(jax.random.PRNGKey(0), 3, 70, 32)
    assert indices.shape == (3, 32)
    real = np.asarray(indices)[np.asarray(weights) == 1]
    assert sorted(real.tolist()) == list(range(70))
    other, _ = step.epoch_batches(jax.random.PRNGKey(0), 4, 70, 32)
    assert not np.array_equal(indices, other)  # a new order each epoch


@pytest.fixture(scope="module")
def two_members_one_epoch():
    """Two members (SGD) and one epoch of 70 images in batches of 32 (the last partial),
    trained with the plain plan: the reference of every other plan."""
    from configs import test

    method, state = _setup(test.get_config(), seeds=(0, 1))
    state = _with_sgd(state, 0.1)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (70, 32, 32, 1)), jnp.uint8)
    before = jax.tree_util.tree_map(jnp.copy, state)
    reference = step.train_epoch(jax.tree_util.tree_map(jnp.copy, state), images, 1,
                                 method=method, batch_size=32, plan=_plan("unroll", chunk=0))
    return method, before, images, reference


@pytest.mark.parametrize("plan", [_plan("unroll", "scan", chunk=0), _plan("vmap", chunk=0),
                                  _plan("unroll", chunk=1), _plan("vmap", "scan", chunk=1)])
def test_execution_plans_compute_the_same_epoch(two_members_one_epoch, plan):
    method, before, images, (ref_state, ref_metrics) = two_members_one_epoch
    new_state, new_metrics = step.train_epoch(jax.tree_util.tree_map(jnp.copy, before), images,
                                              1, method=method, batch_size=32, plan=plan)
    assert ref_metrics["loss"].shape == (2, 3)
    np.testing.assert_allclose(ref_metrics["loss"], new_metrics["loss"], rtol=1e-4)
    _assert_same_update(before, ref_state, new_state)


@pytest.mark.parametrize("epoch_loop", ["host", "scan"])
def test_state_kept_without_donation_and_the_donating_step_agrees(test_config, epoch_loop):
    method, state = _setup(test_config)
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (40, 32, 32, 1)), jnp.uint8)
    kept, _ = step.train_epoch(state, images, 1, method=method, batch_size=16,
                               plan=_plan(loop=epoch_loop, donate=False))
    leaves = jax.tree_util.tree_leaves(state.params)
    assert not any(leaf.is_deleted() for leaf in leaves)
    assert np.isfinite(sum(float(jnp.sum(leaf)) for leaf in leaves))  # still readable
    donated, _ = step.train_epoch(jax.tree_util.tree_map(jnp.copy, state), images, 1,
                                  method=method, batch_size=16,
                                  plan=_plan(loop=epoch_loop, donate=True))
    for a, b in zip(jax.tree_util.tree_leaves(kept.params),
                    jax.tree_util.tree_leaves(donated.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_auto_execution_is_resolved_per_backend(test_config):
    cpu = execution.plan_execution(test_config, backend="cpu")
    assert (cpu.kernels, cpu.lowering, cpu.chunk, cpu.loop, cpu.donate) == (
        "cpu", "unroll", 1, "host", False)
    for backend in ("gpu", "tpu"):
        accelerator = execution.plan_execution(test_config, backend=backend)
        assert (accelerator.kernels, accelerator.lowering, accelerator.loop,
                accelerator.donate) == ("xla", "vmap", "scan", True)
    test_config.execution.kernels = "xla"
    test_config.execution.member_lowering = "vmap"
    forced = execution.plan_execution(test_config, backend="cpu")
    assert (forced.kernels, forced.lowering, forced.chunk) == ("xla", "vmap", 0)


def test_bfloat16_compute_trains_like_float32(test_config):
    """bfloat16 activations are an approximation of the float32 reference: the same init,
    data and order give a loss curve within 2%, and the loss falls."""
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 32, 32, 1)), jnp.uint8)
    curves = {}
    for dtype in ("float32", "bfloat16"):
        test_config.model.compute_dtype = dtype
        method, state = _setup(test_config)
        losses = []
        for epoch in range(1, 5):
            state, metrics = step.train_epoch(state, images, epoch, method=method,
                                              batch_size=32, plan=_plan())
            losses.append(float(np.mean(metrics["loss"])))
        assert jax.tree_util.tree_leaves(state.params)[0].dtype == jnp.float32
        curves[dtype] = np.asarray(losses)
    assert curves["bfloat16"][-1] < 0.8 * curves["bfloat16"][0]
    np.testing.assert_allclose(curves["bfloat16"], curves["float32"], rtol=0.02)


def _count_files(folder):
    sizes = [os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(folder)
             for n in names]
    return len(sizes), sum(sizes)


def test_a_short_run_detects_phantom_anomalies_and_writes_its_files(finished_run):
    workdir, summary = finished_run.workdir, finished_run.summary
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 5]
    final = summary["metrics"][0]
    # 100 + 100 test images: AUROC under chance has a standard deviation of about 0.04.
    assert final["auroc"] > 0.6 and final["pixel_auroc"] > 0.7, final
    assert rows[-1]["recon_error_train_normal"] < 0.7 * rows[0]["recon_error_train_normal"]
    assert final["recon_error_test_abnormal"] > final["recon_error_test_normal"]
    assert 0 < final["dice_best"] <= final["dice_best_exact"] <= 1
    # summary.json's rows are the last evaluation's rows of metrics.jsonl
    with open(os.path.join(workdir, "summary.json")) as f:
        written = json.load(f)
    assert written["metrics"] == [{k: v for k, v in rows[-1].items() if k != "epoch"}]
    model = registry.create(finished_run.config).create_model(16)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(
        (1, 32, 32, 1)), train=False))
    assert written["num_params"] == layers.count_params(variables["params"])
    assert written["config"]["latent_size"] == 16
    data = written["manifest"]["dataset"]
    assert (data["files"]["files"], data["files"]["bytes"]) == _count_files(data["path"])
    assert "phantom" in data["path"] and written["manifest"]["devices"]["count"] >= 1
    with open(os.path.join(workdir, "thresholds.json")) as f:
        thresholds = json.load(f)
    assert thresholds["epoch"] == 5 and thresholds["normal_images"] == "train_normal"
    assert thresholds["members"][0]["threshold"] == final["threshold"]
    assert final["fpr_test_normal"] < 0.2 and final["tpr_test_abnormal"] > 0.05
    for name in ("config.json", "examples.png", "checkpoints/5", "tensorboard",
                 "report/report.md", "report/table1.md", "scores.npz"):
        assert os.path.exists(os.path.join(workdir, name)), name


def test_evaluate_only_restores_the_last_checkpoint_and_gets_the_same_metrics(
        finished_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_run.workdir, workdir)
    evaluated = loop.train_and_evaluate(finished_run.config, workdir, eval_only=True)
    assert evaluated["metrics"] == finished_run.summary["metrics"]


def test_real_divergence_names_the_step(test_config, tmp_path):
    test_config.learning_rate = 1e30
    pattern = r"loss of member 0 became (nan|inf) at step \d+ \(epoch 1\)"
    with pytest.raises(UserError, match=pattern):
        loop.train_and_evaluate(test_config, str(tmp_path))
    assert not os.listdir(tmp_path / "checkpoints")


def test_divergence_keeps_last_good_checkpoint(test_config, tmp_path, monkeypatch):
    test_config.num_epochs = 3
    real_epoch = loop.run_epoch

    def epoch_that_fails_third(state, images, epoch, **kwargs):
        state, metrics, position = real_epoch(state, images, epoch, **kwargs)
        if epoch == 3:
            metrics["loss"] = metrics["loss"].at[0, 4].set(jnp.nan)
        return state, metrics, position

    monkeypatch.setattr(loop, "run_epoch", epoch_that_fails_third)
    steps = -(-test_config.phantom.num_train // test_config.batch_size)
    with pytest.raises(UserError, match=rf"at step {2 * steps + 5} \(epoch 3\); the last good "
                                        r"checkpoint \(epoch 2\) is kept"):
        loop.train_and_evaluate(test_config, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
