"""Ensembles: a mixed-size member is the standalone model of its size; members are independent."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.nets.autoencoder import Architecture, AutoEncoder
from ae4ad_jax.parallel import ensemble, execution
from ae4ad_jax.reporting import tables
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.training import export, loop, step
from ae4ad_jax.training.state import create_train_state
from configs import test as test_config_module

METHOD = registry.create(test_config_module.get_config())


def _state(config, members):
    return create_train_state(config, METHOD, [
        {"latent_size": d, "seed": s} for d, s in members])


def _plan(lowering="unroll", chunk=1, loop="host"):
    return execution.Plan(kernels="cpu", lowering=lowering, loop=loop, donate=False,
                          chunk=chunk)


def _epoch(state, images, epoch=1, plan=None):
    return step.train_epoch(state, images, epoch, method=METHOD, batch_size=32,
                            plan=plan or _plan())


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(np.random.default_rng(0).integers(0, 256, (100, 32, 32, 1)), jnp.uint8)


def test_resize_latent_pads_and_cuts_only_latent_axes():
    model = AutoEncoder(latent_size=3, channels=1,
                        architecture=Architecture(base_width=4, hidden_width=8))
    params = jax.jit(lambda key: model.init(key, jnp.zeros((1, 32, 32, 1)), train=False))(
        jax.random.PRNGKey(0))["params"]
    padded = ensemble.resize_latent(params, 5)
    bottleneck = padded["Bottleneck_0"]
    assert bottleneck["to_latent"]["Dense_0"]["kernel"].shape == (8, 5)
    assert bottleneck["to_latent"]["Dense_0"]["bias"].shape == (5,)
    assert bottleneck["from_latent"]["Dense_0"]["kernel"].shape == (5, 8)
    assert bottleneck["from_latent"]["Dense_0"]["bias"].shape == (8,)
    assert np.all(bottleneck["from_latent"]["Dense_0"]["kernel"][3:] == 0)
    back = ensemble.resize_latent(padded, 3)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_member_hparams(test_config):
    assert ensemble.member_hparams(test_config) == [{"latent_size": 16, "seed": 0}]
    test_config.latent_sizes, test_config.seeds = (1, 4), (0, 7)
    assert ensemble.member_hparams(test_config) == [
        {"latent_size": 1, "seed": 0}, {"latent_size": 1, "seed": 7},
        {"latent_size": 4, "seed": 0}, {"latent_size": 4, "seed": 7}]


@pytest.fixture(scope="module")
def two_epochs(images):
    """Two epochs (8 steps) of three ensembles on the same images: a mixed-size pair
    (d = 2 seed 3, d = 6 seed 4), the same pair with another second member (seed 5), and
    the first member alone."""
    from configs import test

    config = test.get_config()
    runs = {"mixed": [(2, 3), (6, 4)], "other": [(2, 3), (6, 5)], "alone": [(2, 3)]}
    trained = {}
    for name, members in runs.items():
        state, losses = _state(config, members), []
        initial = state
        for epoch in (1, 2):
            state, metrics = _epoch(state, images, epoch)
            losses.append(np.asarray(metrics["loss"]))
        trained[name] = (initial, state, np.concatenate(losses, axis=1))
    return trained


def test_a_mixed_size_member_is_initialised_and_trained_as_the_standalone_model(
        two_epochs, images):
    (mixed0, mixed, losses_mixed), (alone0, alone, losses_alone) = (
        two_epochs["mixed"], two_epochs["alone"])
    # The same initial weights: the member is initialised as the standalone model (fan-in 2).
    cut = ensemble.resize_latent(ensemble.take(mixed0, 0).params, 2)
    for a, b in zip(jax.tree_util.tree_leaves(cut),
                    jax.tree_util.tree_leaves(ensemble.take(alone0, 0).params), strict=True):
        np.testing.assert_array_equal(a, b)
    bias = ensemble.take(alone0, 0).params["Bottleneck_0"]["from_latent"]["Dense_0"]["bias"]
    assert np.abs(bias).max() > 0.5  # U(-1/sqrt(2), 1/sqrt(2)), not fan-in 6
    np.testing.assert_allclose(losses_mixed[0], losses_alone[0], rtol=1e-4)  # 8 steps
    x = jnp.asarray(images[:8], jnp.float32) / 127.5 - 1
    outputs = []
    for state in (ensemble.take(mixed, 0), ensemble.take(alone, 0)):
        apply = jax.jit(lambda variables, mask, apply_fn=state.apply_fn: apply_fn(
            variables, x, train=False, latent_mask=mask, row_keys=None))
        outputs.append(apply({"params": state.params, "batch_stats": state.batch_stats},
                             state.latent_mask))
    np.testing.assert_allclose(outputs[0]["recon"], outputs[1]["recon"], atol=2e-3)
    np.testing.assert_allclose(outputs[0]["z"][:, :2], outputs[1]["z"], atol=2e-3)
    assert np.all(outputs[0]["z"][:, 2:] == 0)


def test_padded_latent_weights_stay_exactly_zero(two_epochs):
    small = ensemble.take(two_epochs["mixed"][1], 0)
    bottleneck = small.params["Bottleneck_0"]
    assert np.all(bottleneck["to_latent"]["Dense_0"]["kernel"][:, 2:] == 0)
    assert np.all(bottleneck["to_latent"]["Dense_0"]["bias"][2:] == 0)
    assert np.all(bottleneck["from_latent"]["Dense_0"]["kernel"][2:] == 0)
    assert np.any(bottleneck["from_latent"]["Dense_0"]["kernel"][:2] != 0)
    mu = small.opt_state[0].mu["Bottleneck_0"]["from_latent"]["Dense_0"]["kernel"]
    assert np.all(mu[2:] == 0) and np.any(mu[:2] != 0)
    np.testing.assert_array_equal(small.latent_mask, [1, 1, 0, 0, 0, 0])


def test_members_train_independently(two_epochs):
    (_, first, losses_first), (_, second, losses_second) = (two_epochs["mixed"],
                                                            two_epochs["other"])
    np.testing.assert_array_equal(losses_first[0], losses_second[0])
    for a, b in zip(jax.tree_util.tree_leaves(ensemble.take(first, 0).params),
                    jax.tree_util.tree_leaves(ensemble.take(second, 0).params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(losses_first[1], losses_second[1])


def test_ensemble_run_reports_every_member(test_config, tmp_path):
    test_config.latent_sizes, test_config.seeds = (2, 8), (0, 1)
    test_config.num_epochs = 1
    summary = loop.train_and_evaluate(test_config, str(tmp_path))
    members = [(row["latent_size"], row["seed"]) for row in summary["metrics"]]
    assert members == [(2, 0), (2, 1), (8, 0), (8, 1)]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["latent_size"], r["seed"]) for r in rows] == members
    assert len({r["auroc"] for r in rows}) == 4
    table = (tmp_path / "report" / "table1.md").read_text()
    assert table.splitlines()[2].startswith("| 8 | 2 |")  # largest d first
    assert table.splitlines()[3].startswith("| 2 | 2 |")
    for name in ("table1.csv", "error_vs_d.png", "auroc_vs_d.png", "entropy_vs_d.png",
                 "auroc_vs_entropy.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    # A member exports as a standalone model (d = 2) that evaluates to the same metrics.
    out = tmp_path / "member1"
    assert export.export(str(tmp_path), 1, str(out)) == {
        "format": "workdir", "member": 1, "latent_size": 2, "seed": 1, "epoch": 1}
    config = workdir_lib.load_saved_config(str(out))
    assert (config.latent_size, config.seed, config.latent_sizes) == (2, 1, ())
    alone = loop.train_and_evaluate(config, str(out), eval_only=True)["metrics"][0]
    assert alone["latent_size"] == 2 and alone["seed"] == 1
    for key in ("auroc", "ap", "pixel_ap", "recon_error_test_abnormal"):
        assert alone[key] == pytest.approx(summary["metrics"][1][key], rel=1e-3)
    with pytest.raises(UserError, match=r"Member 4 does not exist: .* members 0 to 3"):
        export.export(str(tmp_path), 4, str(tmp_path / "nope"))


def test_report_aggregates_mean_and_std():
    rows = [{"latent_size": 4, "seed": s, "auroc": a, "ap": 0.5} for s, a in
            ((0, 0.6), (1, 0.8), (2, 0.7))] + [{"latent_size": 1, "seed": 0, "auroc": 0.5,
                                                "ap": 0.4}]
    table = tables.aggregate(rows)
    assert [e["latent_size"] for e in table] == [1, 4]
    assert np.allclose(table[1]["auroc"], (0.7, np.std([0.6, 0.8, 0.7])))
    assert table[1]["seeds"] == [0, 1, 2] and table[0]["ap"] == (0.4, 0.0)


def test_chunked_members_give_the_same_epoch(test_config, images):
    state = _state(test_config, [(2, 0), (4, 1), (8, 2)])
    copy = jax.tree_util.tree_map(jnp.copy, state)
    whole, metrics_whole = _epoch(state, images, plan=_plan("vmap", chunk=0))
    chunked, metrics_chunked = _epoch(copy, images, plan=_plan("vmap", chunk=2))
    assert metrics_chunked["loss"].shape == (3, 4)
    np.testing.assert_allclose(metrics_chunked["loss"], metrics_whole["loss"], rtol=1e-3)
    np.testing.assert_array_equal(chunked.step, [4, 4, 4])
    scores = [scoring.score_members(scoring.scoring_weights(whole), images, batch_size=64,
                                    method=METHOD, plan=_plan("vmap", chunk=c))["score"]
              for c in (0, 2)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5)


def test_entropy_weight_lowers_latent_entropy(test_config):
    from ae4ad_jax.data import pipeline as input_pipeline

    test_config.latent_sizes, test_config.entropy_weights = (8,), (0.0, 3.0)
    members = ensemble.member_hparams(test_config)
    assert [m["entropy_weight"] for m in members] == [0.0, 3.0]
    state = create_train_state(test_config, METHOD, members)
    images = jnp.asarray(input_pipeline.load(test_config).train_images)
    for epoch in (1, 2, 3):
        state, metrics = _epoch(state, images, epoch)
    entropy_plain, entropy_weighted = np.asarray(metrics["latent_entropy"]).mean(axis=1)
    assert entropy_weighted < entropy_plain - 0.1, (entropy_weighted, entropy_plain)
    np.testing.assert_allclose(metrics["loss"][0], metrics["reconstruction_loss"][0])


def test_label_free_choice_of_d_uses_normal_reconstruction_only():
    table = [{"latent_size": d, "seeds": [0], "auroc": (a, 0.0),
              "recon_error_train_normal": (e, 0.0)}
             for d, a, e in ((1, 0.9, 0.2), (4, 0.7, 0.1), (16, 0.6, 0.052), (64, 0.5, 0.05))]
    assert tables.select_latent_size(table) == (16, "recon_error_train_normal")
    for entry, val in zip(table, (0.3, 0.1, 0.2, 0.2), strict=True):
        entry["recon_error_val_normal"] = (val, 0.0)
    assert tables.select_latent_size(table) == (4, "recon_error_val_normal")
