"""The trainer: exactness of padded batches, lowering choices, end-to-end runs."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ae4ad_jax import execution, manifest, methods, train
from ae4ad_jax.errors import UserError


def _setup(config, seeds=(0,)):
    method = methods.create(config)
    members = [{"latent_size": config.latent_size, "seed": seed} for seed in seeds]
    return method, train.create_train_state(config, method, members)


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
    step = jax.jit(functools.partial(train.train_step, method=method))
    key = jax.random.PRNGKey(0)
    plain, plain_metrics = step(state, images, jnp.ones(5), jnp.arange(5), key)
    masked, masked_metrics = step(state, padded, weights, jnp.arange(8), key)
    np.testing.assert_allclose(plain_metrics["loss"], masked_metrics["loss"], rtol=1e-6)
    _assert_same_update(state, plain, masked)


def test_epoch_covers_every_image_once_per_member():
    indices, weights = train.epoch_batches(jax.random.PRNGKey(0), 3, 70, 32)
    assert indices.shape == (3, 32)
    real = np.asarray(indices)[np.asarray(weights) == 1]
    assert sorted(real.tolist()) == list(range(70))
    other, _ = train.epoch_batches(jax.random.PRNGKey(0), 4, 70, 32)
    assert not np.array_equal(indices, other)  # a new order each epoch


@pytest.mark.parametrize("plan", [_plan("unroll", "scan", chunk=0), _plan("vmap", chunk=0),
                                  _plan("unroll", chunk=1), _plan("vmap", "scan", chunk=1)])
def test_execution_plans_compute_the_same_epoch(test_config, plan):
    method, state = _setup(test_config, seeds=(0, 1))
    state = _with_sgd(state, 0.1)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (70, 32, 32, 1)), jnp.uint8)
    copy = jax.tree_util.tree_map(jnp.copy, state)
    before = jax.tree_util.tree_map(jnp.copy, state)
    ref_state, ref_metrics = train.train_epoch(state, images, 1, method=method, batch_size=32,
                                               plan=_plan("unroll", chunk=0))
    new_state, new_metrics = train.train_epoch(copy, images, 1, method=method, batch_size=32,
                                               plan=plan)
    assert ref_metrics["loss"].shape == (2, 3)
    np.testing.assert_allclose(ref_metrics["loss"], new_metrics["loss"], rtol=1e-4)
    _assert_same_update(before, ref_state, new_state)


@pytest.mark.parametrize("loop", ["host", "scan"])
def test_state_kept_without_donation_and_the_donating_step_agrees(test_config, loop):
    method, state = _setup(test_config)
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (40, 32, 32, 1)), jnp.uint8)
    kept, _ = train.train_epoch(state, images, 1, method=method, batch_size=16,
                                plan=_plan(loop=loop, donate=False))
    leaves = jax.tree_util.tree_leaves(state.params)
    assert not any(leaf.is_deleted() for leaf in leaves)
    assert np.isfinite(sum(float(jnp.sum(leaf)) for leaf in leaves))  # still readable
    donated, _ = train.train_epoch(jax.tree_util.tree_map(jnp.copy, state), images, 1,
                                   method=method, batch_size=16,
                                   plan=_plan(loop=loop, donate=True))
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
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (128, 32, 32, 1)), jnp.uint8)
    curves = {}
    for dtype in ("float32", "bfloat16"):
        test_config.model.compute_dtype = dtype
        method, state = _setup(test_config)
        losses = []
        for epoch in range(1, 5):
            state, metrics = train.train_epoch(state, images, epoch, method=method,
                                               batch_size=32, plan=_plan())
            losses.append(float(np.mean(metrics["loss"])))
        assert jax.tree_util.tree_leaves(state.params)[0].dtype == jnp.float32
        curves[dtype] = np.asarray(losses)
    assert curves["bfloat16"][-1] < 0.8 * curves["bfloat16"][0]
    np.testing.assert_allclose(curves["bfloat16"], curves["float32"], rtol=0.02)


def _final(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)["metrics"][0]


def test_short_training_detects_phantom_anomalies(test_config, tmp_path):
    config = test_config
    config.num_epochs = 6
    config.eval_every_epochs = 5
    summary = train.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 5, 6]
    final = summary["metrics"][0]
    # 150 + 150 test images: the standard deviation of AUROC under chance is about 0.033.
    assert final["auroc"] > 0.6 and final["pixel_auroc"] > 0.7, final
    assert rows[-1]["recon_error_train_normal"] < 0.5 * rows[0]["recon_error_train_normal"]
    assert final["recon_error_test_abnormal"] > final["recon_error_test_normal"]
    assert 0 < final["dice_best"] <= final["dice_best_exact"] <= 1
    assert summary["num_params"] > 0 and summary["config"]["latent_size"] == 16
    data = summary["manifest"]["dataset"]
    assert data["files"] == manifest.fingerprint(data["path"]) and data["files"]["files"] > 0
    assert "phantom" in data["path"] and summary["manifest"]["devices"]["count"] >= 1
    assert len(data["content_sha256"]) == 64
    with open(tmp_path / "thresholds.json") as f:
        thresholds = json.load(f)
    assert thresholds["epoch"] == 6 and thresholds["normal_images"] == "train_normal"
    assert thresholds["members"][0]["threshold"] == final["threshold"]
    assert final["fpr_test_normal"] < 0.2 and final["tpr_test_abnormal"] > 0.05
    for name in ("config.json", "examples.png", "summary.json", "checkpoints", "tensorboard"):
        assert (tmp_path / name).exists(), name
    assert _final(tmp_path) == final
    # Same config and seed: identical metrics, run after run.
    again = train.train_and_evaluate(config, str(tmp_path / "again"))
    assert again["metrics"][0] == final
    # Evaluate-only mode reloads the final checkpoint and gets the same metrics.
    evaluated = train.train_and_evaluate(config, str(tmp_path), eval_only=True)
    assert evaluated["metrics"][0] == final


def test_real_divergence_names_the_step(test_config, tmp_path):
    test_config.learning_rate = 1e30
    pattern = r"loss of member 0 became (nan|inf) at step \d+ \(epoch 1\)"
    with pytest.raises(UserError, match=pattern):
        train.train_and_evaluate(test_config, str(tmp_path))
    assert not os.listdir(tmp_path / "checkpoints")


def test_divergence_keeps_last_good_checkpoint(test_config, tmp_path, monkeypatch):
    test_config.num_epochs = 3
    real_epoch = train.train_epoch

    def epoch_that_fails_third(state, images, epoch, **kwargs):
        state, metrics = real_epoch(state, images, epoch, **kwargs)
        if epoch == 3:
            metrics["loss"] = metrics["loss"].at[0, 4].set(jnp.nan)
        return state, metrics

    monkeypatch.setattr(train, "train_epoch", epoch_that_fails_third)
    steps = -(-test_config.phantom.num_train // test_config.batch_size)
    with pytest.raises(UserError, match=rf"at step {2 * steps + 5} \(epoch 3\); the last good "
                                        r"checkpoint \(epoch 2\) is kept"):
        train.train_and_evaluate(test_config, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
