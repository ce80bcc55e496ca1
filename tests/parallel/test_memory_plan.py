"""The memory planner (`execution.fit_to_memory`, `training/memory.py`) with injected device
memory: no chunking, chunking, refusal, and its estimate against XLA's own analysis."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import execution, mesh
from ae4ad_jax.training import loop, memory
from ae4ad_jax.training import state as state_lib
from ae4ad_jax.training import step as train_step

NEED = execution.MemoryNeed(data=1_000, state=100, program=1_000)
ACCELERATOR = execution.Plan(kernels="xla", lowering="vmap", loop="scan", donate=True, chunk=0)


class _Device:
    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return self.stats


def _limit_for(chunk, members=8, plan=ACCELERATOR):
    """The smallest device limit under which `chunk` members' programs fit (NEED)."""
    return math.ceil(NEED.total(members, chunk, plan.donate) / execution.MEMORY_FRACTION)


def _unasked():
    raise AssertionError("the estimate is not needed here")


def test_without_a_device_limit_every_member_shares_one_program(monkeypatch):
    monkeypatch.setattr(jax, "local_devices", lambda: [_Device(None), _Device({})])
    assert execution.device_memory() is None
    assert execution.fit_to_memory(ACCELERATOR, 8, _unasked).chunk == 8


def test_the_smallest_reported_limit_of_the_local_devices_counts(monkeypatch):
    monkeypatch.setattr(jax, "local_devices", lambda: [
        _Device({"bytes_limit": 9_000}), _Device(None), _Device({"bytes_limit": 3_000})])
    assert execution.device_memory() == 3_000
    limit = _limit_for(2)  # above the devices' 3000 bytes, under which all are refused
    with pytest.raises(UserError):
        execution.fit_to_memory(ACCELERATOR, 8, lambda: NEED)
    planned = dataclasses.replace(ACCELERATOR, memory_limit=limit)  # the config's setting
    assert execution.fit_to_memory(planned, 8, lambda: NEED).chunk == 2


def test_members_that_fit_together_are_not_chunked():
    plan = execution.fit_to_memory(ACCELERATOR, 8, lambda: NEED, limit=10**9)
    assert plan.chunk == 8  # room for far more, but never more than the members


@pytest.mark.parametrize("donate", [True, False])
def test_members_run_in_the_fewest_programs_that_fit_in_equal_chunks(donate):
    plan = dataclasses.replace(ACCELERATOR, donate=donate)
    for fit, chunk in ((1, 1), (2, 2), (3, 3), (5, 4), (7, 4)):  # 8 members
        limit = _limit_for(fit, plan=plan)
        assert execution.fit_to_memory(plan, 8, lambda: NEED, limit=limit).chunk == chunk
        less = _limit_for(fit + 1, plan=plan) - 10  # not quite fit + 1: the same plan
        assert execution.fit_to_memory(plan, 8, lambda: NEED, limit=less).chunk == chunk


def test_a_chunk_set_in_the_config_is_kept():
    plan = dataclasses.replace(ACCELERATOR, chunk=2)
    assert execution.fit_to_memory(plan, 8, _unasked, limit=1).chunk == 2


def test_members_that_cannot_fit_are_refused_with_the_figures():
    limit = _limit_for(1) - 20  # the data, the states, and not quite one program
    with pytest.raises(UserError, match=r"8 member\(s\) per device do not fit") as error:
        execution.fit_to_memory(ACCELERATOR, 8, lambda: NEED, limit=limit)
    assert "lower batch_size or image_size" in str(error.value)
    states_alone = int(NEED.total(8, 0, True) / execution.MEMORY_FRACTION)  # no room at all
    with pytest.raises(UserError):
        execution.fit_to_memory(ACCELERATOR, 8, lambda: NEED, limit=states_alone)


def test_describe_names_the_chunk_and_the_bytes():
    plan = dataclasses.replace(ACCELERATOR, chunk=3)
    text = execution.describe(plan, 8, NEED, 10**9)
    assert text.startswith("3 of 8 member(s) per program (vmap), a whole epoch per program, "
                           "state donated, xla kernels")
    assert "of 1.00 GB device memory" in text


def _analysis_bytes(compiled):
    a = compiled.memory_analysis()
    return (a.argument_size_in_bytes + a.output_size_in_bytes + a.temp_size_in_bytes
            - a.alias_size_in_bytes)


@pytest.fixture(scope="module")
def accelerator_run():
    """configs/test.py with the accelerator's plan forced (kernels, vmap, scan), 4 members,
    and its estimate."""
    from configs import test

    config = test.get_config()
    for key, value in (("kernels", "xla"), ("member_lowering", "vmap"), ("epoch_loop", "scan"),
                       ("donate_state", "yes")):
        config.execution[key] = value
    method = registry.create(config)
    state = state_lib.create_train_state(config, method, [
        {"latent_size": 4, "seed": seed} for seed in range(4)])
    rows = mesh.place_rows(jnp.zeros((96, 32, 32, 1), jnp.uint8), mesh.single_device())
    need = memory.memory_need(state, config, method, execution.plan_execution(config),
                              {"test": 96}, with_maps=True)
    return config, method, state, rows, need


@pytest.mark.parametrize("donate", [True, False])
def test_the_estimate_matches_xla_memory_analysis_of_the_chunk_program(accelerator_run,
                                                                        donate):
    """A program of all 4 members (3 scanned steps), compiled whole, donating its state or
    not: XLA's analysis of its peak against the estimate made from one member's program."""
    config, method, state, rows, need = accelerator_run
    assert need.data == 96 * 32 * 32
    assert need.state * 4 == sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
    program = jax.jit(functools.partial(
        train_step.device_steps, method=method, lowering="vmap", num_steps=3, data_shards=1),
        donate_argnums=0 if donate else ())
    batches = jnp.zeros((4, 3, config.batch_size), jnp.int32)
    compiled = program.lower(state, rows.images, batches, batches.astype(jnp.float32),
                             jnp.int32(0)).compile()
    xla = _analysis_bytes(compiled)
    estimate = need.total(4, 4, donate)
    assert abs(estimate - xla) <= 0.1 * xla, (estimate, xla)


def test_the_estimate_covers_scoring_with_maps(accelerator_run):
    """4000 test images scored with maps: their maps outweigh a training step here."""
    from ae4ad_jax.evaluation import scoring

    config, method, state, _, _ = accelerator_run
    plan = execution.plan_execution(config)
    images = jax.ShapeDtypeStruct((4000, 32, 32, 1), jnp.uint8)
    need, without = (memory.memory_need(state, config, method, plan, {"test": 4000}, maps)
                     for maps in (True, False))
    maps = 4000 * 32 * 32 * 4  # one member's float32 maps, an output of its program
    assert need.program >= maps > without.program
    compiled = scoring.score_images.lower(
        scoring.scoring_weights(state), images, jnp.int32(0), method=method,
        batch_size=config.eval.batch_size, with_maps=True, lowering="vmap").compile()
    xla = _analysis_bytes(compiled)
    assert xla <= need.total(4, 4, True) <= 1.5 * xla, (need.total(4, 4, True), xla)


def test_a_run_chunks_its_members_to_the_device_memory(test_config, tmp_path, monkeypatch,
                                                       capsys):
    """The trainer asks the planner: with device memory (execution.memory_limit_bytes) for
    one of its two
    members' programs, members train one per program; with less than one, the run is
    refused before its first step. The run's own estimate is made and checked too."""
    test_config.latent_sizes, test_config.seeds, test_config.num_epochs = (2,), (0, 1), 1
    test_config.execution.member_lowering = "vmap"
    made = []

    def need(*args):
        if not made:  # the run's own estimate, once
            made.append(estimate(*args))
        return NEED

    estimate = memory.memory_need
    monkeypatch.setattr(memory, "memory_need", need)
    copied = dataclasses.replace(ACCELERATOR, donate=False)  # the CPU's choice
    test_config.execution.memory_limit_bytes = _limit_for(1, members=2, plan=copied)
    summary = loop.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert len(summary["metrics"]) == 2
    assert "1 of 2 member(s) per program (vmap)" in capsys.readouterr().out
    (run_need,) = made  # the test split (200 images) is scored with maps
    assert run_need.data == (256 + 200) * 32 * 32 and run_need.program > 200 * 32 * 32 * 4
    test_config.execution.memory_limit_bytes = _limit_for(1, members=2, plan=copied) - 20
    with pytest.raises(UserError, match=r"2 member\(s\) per device do not fit"):
        loop.train_and_evaluate(test_config, str(tmp_path / "refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists() or not any(
        (tmp_path / "refused" / "checkpoints").iterdir())
