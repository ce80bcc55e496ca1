"""Runs in a fresh process with 8 forced CPU devices everything the suite checks about
layouts, and saves what tests/parallel/test_sharding.py compares:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python tests/parallel/multidevice_run.py OUT [METHOD ...]

1. Layouts. The same members trained on different layouts: one device, a (1, 8) mesh,
   pmap over 8 devices, and a 4-member ensemble on one device and on a (4, 2) mesh. The
   same global batches go through every layout (70 images in batches of 16: the last
   batch is partial), with the latent-entropy term on. Each run's state after epoch 1 is
   checkpointed; the "_to_" runs restore another layout's checkpoint (8 devices to 1, 1
   to 8) and train epoch 2 (their epoch-1 losses are zeros). Writes OUT/<name>.npz:
   per-step losses, final parameters and BatchNorm statistics, test scores.
2. The method family. Each METHOD ("ae+rate": the AE with the learned rate, members with
   rate weights 0.01 and 0.1) is trained as one mixed-size ensemble (d = 2 seed 0, d = 4
   seed 1: the ensemble pads d = 2 to 4) on a (member, data) = (2, 4) mesh, and its padded
   member alone, as the standalone model of d = 2 on one device: 22 images in batches of
   8, 2 epochs, so the last batch has 6 real rows and one data shard holds only padding.
   Writes OUT/<method>_alone.npz and OUT/<method>_mesh.npz (the padded member).
3. A batch that does not split over the devices: the message, in OUT/refused.txt.
"""

import os
import sys

import jax
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ae4ad_jax.core.errors import UserError  # noqa: E402
from ae4ad_jax.evaluation import scoring  # noqa: E402
from ae4ad_jax.methods import registry  # noqa: E402
from ae4ad_jax.nets import cpu_kernels  # noqa: E402
from ae4ad_jax.parallel import ensemble, execution, mesh, programs  # noqa: E402
from ae4ad_jax.runs import checkpoints  # noqa: E402
from ae4ad_jax.training import step  # noqa: E402
from ae4ad_jax.training.state import create_train_state  # noqa: E402


def _layout(shape, form):
    return mesh.Layout(jax.sharding.Mesh(
        np.asarray(jax.devices()[:shape[0] * shape[1]]).reshape(shape),
        (mesh.MEMBER, mesh.DATA)), form)


def _with_sgd(state, lr):
    """SGD: parameter changes are the gradients themselves."""
    sgd = optax.sgd(lr)
    return state.replace(tx=sgd, opt_state=sgd.init(state.params))


def _train(state, method, layout, plan, images, epochs, batch):
    rows = mesh.place_rows(images, layout)
    losses = []
    for epoch in epochs:
        state, metrics = step.train_epoch(state, rows, epoch, method=method, batch_size=batch,
                                          plan=plan, layout=layout)
        losses.append(mesh.to_host(metrics["loss"]))
    return state, losses


def _scores(state, method, layout, plan, test_images, batch):
    return scoring.score_members(scoring.scoring_weights(state), test_images,
                                 batch_size=batch, method=method, plan=plan, layout=layout)


# ----------------------------------------------------------------------------- 1. layouts

NUM_IMAGES, BATCH = 70, 16


def _layout_config():
    from configs import test

    config = test.get_config()
    config.batch_size = BATCH
    return config


def _results(state, losses, scores):
    host = mesh.to_host(state)
    leaves = jax.tree_util.tree_leaves((host.params, host.batch_stats))
    return {"losses": np.concatenate(losses, axis=1), "score": scores["score"],
            "z": scores["z"], **{f"leaf{i}": leaf for i, leaf in enumerate(leaves)}}


def _run(config, members, layout, plan, images, test_images, checkpoint_dir):
    """Two epochs; the state after the first is checkpointed in `checkpoint_dir`."""
    method = registry.create(config)
    state = mesh.place(_with_sgd(create_train_state(config, method, members), 0.05),
                           layout, mesh.MEMBERS)
    state, first = _train(state, method, layout, plan, images, [1], BATCH)
    manager = checkpoints.create_manager(checkpoint_dir)
    checkpoints.save(manager, 1, state)
    manager.wait_until_finished()
    state, second = _train(state, method, layout, plan, images, [2], BATCH)
    return _results(state, first + second,
                    _scores(state, method, layout, plan, test_images, 64))


def _resume(config, members, layout, plan, images, test_images, checkpoint_dir):
    """The second epoch from another layout's checkpoint of the first."""
    method = registry.create(config)
    target = mesh.place(_with_sgd(create_train_state(config, method, members), 0.05),
                            layout, mesh.MEMBERS)
    manager = checkpoints.create_manager(checkpoint_dir)
    state, epoch = checkpoints.restore_or_keep(manager, target, checkpoint_dir)
    assert epoch == 1
    state, second = _train(state, method, layout, plan, images, [2], BATCH)
    return _results(state, [np.zeros_like(second[0])] + second,
                    _scores(state, method, layout, plan, test_images, 64))


def run_layouts(out):
    config = _layout_config()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (NUM_IMAGES, 32, 32, 1), dtype=np.uint8)
    test_images = rng.integers(0, 256, (21, 32, 32, 1), dtype=np.uint8)
    one = [{"latent_size": 16, "seed": 0, "entropy_weight": 0.05}]
    members = [{"latent_size": d, "seed": s} for d in (2, 4) for s in range(2)]

    def plan(lowering="unroll", loop="host", chunk=0):
        return execution.Plan(kernels="cpu", lowering=lowering, loop=loop, donate=False,
                              chunk=chunk)

    runs = {
        "single": (one, (1, 1), "none", plan()),
        "mesh": (one, (1, 8), "mesh", plan()),
        "pmap": (one, (1, 8), "pmap", plan(loop="scan")),
        "ensemble_single": (members, (1, 1), "none", plan("vmap")),
        "ensemble_mesh": (members, (4, 2), "mesh", plan()),
    }
    for name, (run_members, shape, form, run_plan) in runs.items():
        result = _run(config, run_members, _layout(shape, form), run_plan, images,
                      test_images, os.path.join(out, name))
        np.savez(os.path.join(out, f"{name}.npz"), **result)
        print(name, "done", flush=True)
    # Checkpoints moved between device counts: 8 devices -> 1, and 1 -> 8.
    for name, saved, (shape, form) in (("mesh_to_single", "mesh", ((1, 1), "none")),
                                       ("single_to_mesh", "single", ((1, 8), "mesh"))):
        result = _resume(config, one, _layout(shape, form), plan(), images, test_images,
                         os.path.join(out, saved))
        np.savez(os.path.join(out, f"{name}.npz"), **result)
        print(name, "done", flush=True)


# ----------------------------------------------------------------------------- 2. family

FAMILY_IMAGES, FAMILY_BATCH, FAMILY_EPOCHS = 22, 8, 2
FAMILY_MEMBERS = [{"latent_size": 2, "seed": 0}, {"latent_size": 4, "seed": 1}]
# SGD's learning rate; at 0.05 two methods train unstably here and amplify rounding step
# after step (their first steps agree to 1e-6): GANomaly (MSE weighted 50, an adversarial
# game) and the Constrained AE (its latent-consistency gradients are large while the code
# is unnormalised).
LEARNING_RATES = {"ganomaly": 0.001, "constrained-ae": 0.001}
RATE_SUFFIX, RATE_WEIGHTS = "+rate", (0.01, 0.1)


def _family_members(name):
    if not name.endswith(RATE_SUFFIX):
        return FAMILY_MEMBERS
    return [dict(m, rate_weight=w) for m, w in zip(FAMILY_MEMBERS, RATE_WEIGHTS, strict=True)]


def _family_config(name):
    from configs import default

    config = default.get_config()

    config.channels = 1  # phantom's (a run resolves 0 from its dataset)
    config.rate.enabled = name.endswith(RATE_SUFFIX)
    name = name.removesuffix(RATE_SUFFIX)
    config.method, config.image_size, config.batch_size = name, 16, FAMILY_BATCH
    config.model.update(base_width=4, hidden_width=16)
    config.dae.update(depth=2, width_log2=2)
    config.ssim.window = 5
    config.dataset = "brats"  # the DAE's foreground noise takes the batch minimum
    config.execution.kernels = "xla"
    return config


def _family_run(config, members, layout, images, test_images):
    method = registry.create(config)
    state = create_train_state(config, method, members)
    state = mesh.place(_with_sgd(state, LEARNING_RATES.get(config.method, 0.05)), layout,
                           mesh.MEMBERS)
    plan = execution.Plan(kernels="xla", lowering="vmap", loop="host", donate=False, chunk=0)
    state, losses = _train(state, method, layout, plan, images,
                           range(1, FAMILY_EPOCHS + 1), FAMILY_BATCH)
    scores = _scores(state, method, layout, plan, test_images, FAMILY_BATCH)
    host = mesh.to_host(state)
    results = []
    for m, member in enumerate(members):
        one = ensemble.take(host, m)
        own = ensemble.resize_latent((one.params, one.batch_stats), member["latent_size"])
        leaves = jax.tree_util.tree_leaves(own)
        results.append({"losses": np.concatenate(losses, axis=1)[m],
                        "score": scores["score"][m],
                        **{f"leaf{i}": leaf for i, leaf in enumerate(leaves)}})
    return results


def run_family(out, names):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (FAMILY_IMAGES, 16, 16, 1), dtype=np.uint8)
    images[:, :2] = 0  # a dark border: the MRI foreground rule has a background to skip
    test_images = rng.integers(0, 256, (11, 16, 16, 1), dtype=np.uint8)
    for name in names:
        config = _family_config(name)
        members = _family_members(name)
        [alone] = _family_run(config, members[:1], _layout((1, 1), "none"), images,
                              test_images)
        np.savez(os.path.join(out, f"{name}_alone.npz"), **alone)
        mesh = _family_run(config, members, _layout((2, 4), "mesh"), images, test_images)
        np.savez(os.path.join(out, f"{name}_mesh.npz"), **mesh[0])
        print(name, "done", flush=True)


# ----------------------------------------------------------------------------- 3. refusal


def refuse_a_batch_that_does_not_split(out):
    config = _layout_config()
    config.batch_size, config.mesh_shape = 12, (1, 8)
    try:
        mesh.create_layout(config, 1)
        message = "accepted"
    except UserError as error:
        message = str(error)
    with open(os.path.join(out, "refused.txt"), "w") as f:
        f.write(message)


def main(out, names):
    cpu_kernels.apply_xla_cpu_flags()
    jax.config.update("jax_disable_most_optimizations", True)
    assert len(jax.devices()) == 8, jax.devices()
    refuse_a_batch_that_does_not_split(out)
    run_layouts(out)
    programs.clear_programs()
    jax.clear_caches()
    run_family(out, names)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
