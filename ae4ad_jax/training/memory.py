"""What a run holds in each device's memory (`execution.MemoryNeed`), for the planner.

One member's programs are compiled as the plan runs them, on abstract arrays (nothing
is allocated), and XLA's memory analysis gives their temporaries: the training steps
(one step, or a scanned loop of them) and the scoring of each split, with its outputs
(maps included for a test split with masks). `fit_to_memory` multiplies them by the members of a
chunk; tests/parallel/test_memory_plan.py checks that against XLA's analysis of the
chunk's own program.
"""

import functools
import math

import jax
import jax.numpy as jnp

from ae4ad_jax.evaluation import scoring
from ae4ad_jax.parallel import execution
from ae4ad_jax.training import step as train_step


def _one_member(tree):
    """Abstract arrays of one member, its leading member axis kept (of length 1)."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype), tree)


def _member_bytes(tree) -> int:
    return sum(math.prod(x.shape[1:]) * x.dtype.itemsize
               for x in jax.tree_util.tree_leaves(tree))


def step_bytes(state, config, method, plan) -> int:
    """Temporaries of one member's training program under `plan` (two scanned steps
    with the "scan" loop: a loop's buffers are those of any number of steps)."""
    num_steps = 2 if plan.loop == "scan" else 1
    shape = (config.batch_size, config.image_size, config.image_size, config.channels)
    program = jax.jit(functools.partial(
        train_step.device_steps, method=method, lowering=plan.lowering, num_steps=num_steps,
        data_shards=1), donate_argnums=0 if plan.donate else ())
    batches = jax.ShapeDtypeStruct((1, num_steps, config.batch_size), jnp.int32)
    compiled = program.lower(_one_member(state), jax.ShapeDtypeStruct(shape, jnp.uint8),
                             batches, jax.ShapeDtypeStruct(batches.shape, jnp.float32),
                             jnp.int32(0)).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def scoring_bytes(state, config, method, plan, num_rows: int, with_maps: bool) -> int:
    """Outputs and temporaries of one member's scoring of `num_rows` images."""
    shape = (num_rows, config.image_size, config.image_size, config.channels)
    compiled = scoring.score_images.lower(
        _one_member(scoring.scoring_weights(state)), jax.ShapeDtypeStruct(shape, jnp.uint8),
        jnp.int32(0), method=method, batch_size=config.eval.batch_size, with_maps=with_maps,
        lowering=plan.lowering).compile()
    analysis = compiled.memory_analysis()
    return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)


def memory_need(state, config, method, plan, split_rows: dict, with_maps: bool
                ) -> execution.MemoryNeed:
    """A run's need on each device: `split_rows` the rows of each placed split on one device
    ({"train": 4211, "test": 2776}), `with_maps` whether the test split is scored with maps
    (the other splits never are)."""
    image = config.image_size * config.image_size * config.channels
    program = step_bytes(state, config, method, plan)
    for name, rows in split_rows.items():
        if rows:
            program = max(program, scoring_bytes(state, config, method, plan, rows,
                                                 with_maps and name == "test"))
    return execution.MemoryNeed(data=sum(split_rows.values()) * image,
                                state=_member_bytes(state), program=program)
