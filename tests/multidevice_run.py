"""Trains the same members on different layouts and saves what tests compare.

Run by tests/test_sharding.py in a fresh process with 8 forced CPU devices:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice_run.py OUT

Writes OUT/<name>.npz for each layout: per-step losses, final parameters and
BatchNorm statistics, and test scores. The same global batches go through every
layout (70 images in batches of 16: the last batch is partial), with the
latent-entropy term on. Each run's state after epoch 1 is checkpointed; the
"_to_" runs restore another layout's checkpoint (8 devices to 1, 1 to 8) and
train epoch 2 (their epoch-1 losses are zeros).
"""

import os
import sys

import jax
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ae4ad_jax import (  # noqa: E402
    checkpointing,
    cpu_kernels,
    execution,
    methods,
    sharding,
    train,
)

NUM_IMAGES, BATCH, EPOCHS = 70, 16, 2


def _config():
    from configs import test

    config = test.get_config()
    config.batch_size = BATCH
    return config


def _state(config, members):
    state = train.create_train_state(config, methods.create(config), members)
    sgd = optax.sgd(0.05)  # SGD: parameter changes are the gradients themselves
    return state.replace(tx=sgd, opt_state=sgd.init(state.params))


def _layout(shape, form):
    return sharding.Layout(jax.sharding.Mesh(
        np.asarray(jax.devices()[:shape[0] * shape[1]]).reshape(shape),
        (sharding.MEMBER, sharding.DATA)), form)


def _train(state, layout, plan, images, epochs):
    rows = sharding.place_rows(images, layout)
    losses = []
    for epoch in epochs:
        state, metrics = train.train_epoch(state, rows, epoch, method=methods.create(_config()),
                                           batch_size=BATCH, plan=plan, layout=layout)
        losses.append(sharding.to_host(metrics["loss"]))
    return state, losses


def _results(config, state, losses, layout, plan, test_images):
    scores = train.score_members(state, test_images, config=config,
                                 method=methods.create(config), plan=plan, layout=layout)
    host = sharding.to_host(state)
    leaves = jax.tree_util.tree_leaves((host.params, host.batch_stats))
    return {"losses": np.concatenate(losses, axis=1), "score": scores["score"],
            "z": scores["z"], **{f"leaf{i}": leaf for i, leaf in enumerate(leaves)}}


def _run(config, members, layout, plan, images, test_images, checkpoint_dir):
    """Two epochs; the state after the first is checkpointed in `checkpoint_dir`."""
    state = sharding.place(_state(config, members), layout, sharding.MEMBERS)
    state, first = _train(state, layout, plan, images, [1])
    manager = checkpointing.create_manager(checkpoint_dir)
    checkpointing.save(manager, 1, state)
    manager.wait_until_finished()
    state, second = _train(state, layout, plan, images, [2])
    return _results(config, state, first + second, layout, plan, test_images)


def _resume(config, members, layout, plan, images, test_images, checkpoint_dir):
    """The second epoch from another layout's checkpoint of the first."""
    target = sharding.place(_state(config, members), layout, sharding.MEMBERS)
    manager = checkpointing.create_manager(checkpoint_dir)
    state, epoch = checkpointing.restore_or_keep(manager, target, checkpoint_dir)
    assert epoch == 1
    state, second = _train(state, layout, plan, images, [2])
    return _results(config, state, [np.zeros_like(second[0])] + second, layout, plan,
                    test_images)


def main(out):
    cpu_kernels.apply_xla_cpu_flags()
    jax.config.update("jax_disable_most_optimizations", True)
    assert len(jax.devices()) == 8, jax.devices()
    config = _config()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (NUM_IMAGES, 32, 32, 1), dtype=np.uint8)
    test_images = rng.integers(0, 256, (21, 32, 32, 1), dtype=np.uint8)
    one = [{"latent_size": 16, "seed": 0, "entropy_weight": 0.05}]
    ensemble = [{"latent_size": d, "seed": s} for d in (2, 4) for s in range(4)]

    def plan(lowering="unroll", loop="host", chunk=0):
        return execution.Plan(kernels="cpu", lowering=lowering, loop=loop, donate=False,
                              chunk=chunk)

    runs = {
        "single": (one, (1, 1), "none", plan()),
        "mesh": (one, (1, 8), "mesh", plan()),
        "pmap": (one, (1, 8), "pmap", plan(loop="scan")),
        "ensemble_single": (ensemble, (1, 1), "none", plan("vmap")),
        "ensemble_mesh": (ensemble, (4, 2), "mesh", plan()),
    }
    for name, (members, shape, form, run_plan) in runs.items():
        result = _run(config, members, _layout(shape, form), run_plan, images, test_images,
                      os.path.join(out, name))
        np.savez(os.path.join(out, f"{name}.npz"), **result)
        print(name, "done", flush=True)
    # Checkpoints moved between device counts: 8 devices -> 1, and 1 -> 8.
    for name, saved, (shape, form) in (("mesh_to_single", "mesh", ((1, 1), "none")),
                                       ("single_to_mesh", "single", ((1, 8), "mesh"))):
        result = _resume(config, one, _layout(shape, form), plan(), images, test_images,
                         os.path.join(out, saved))
        np.savez(os.path.join(out, f"{name}.npz"), **result)
        print(name, "done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
