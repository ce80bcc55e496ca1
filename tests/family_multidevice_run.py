"""Trains each listed method as standalone models on one device and as one ensemble on a
(member, data) = (2, 4) mesh, and saves what tests/test_methods_sharded.py compares.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/family_multidevice_run.py \
        OUT METHOD [METHOD ...]

METHOD "ae+rate" is the AE with the learned rate on (members with rate weights 0.01 and
0.1). Members: d = 2 seed 0 and d = 4 seed 1 (the ensemble pads d = 2 to 4). 22 images in
batches of 8, 2 epochs: the last batch has 6 real rows, so on the mesh one data shard
holds only padding. Writes OUT/<method>_<run>.npz (losses [steps], the member's
parameters and BatchNorm statistics cut to its own d, test scores).
"""

import os
import sys

import jax
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ae4ad_jax import ensemble, execution, methods, sharding, train  # noqa: E402

NUM_IMAGES, BATCH, EPOCHS = 22, 8, 2
MEMBERS = [{"latent_size": 2, "seed": 0}, {"latent_size": 4, "seed": 1}]
LEARNING_RATES = {"ganomaly": 0.001, "constrained-ae": 0.001}


RATE_SUFFIX, RATE_WEIGHTS = "+rate", (0.01, 0.1)


def _members(name):
    if not name.endswith(RATE_SUFFIX):
        return MEMBERS
    return [dict(m, rate_weight=w) for m, w in zip(MEMBERS, RATE_WEIGHTS, strict=True)]


def _config(name):
    from configs import default

    config = default.get_config()
    config.rate.enabled = name.endswith(RATE_SUFFIX)
    name = name.removesuffix(RATE_SUFFIX)
    config.method, config.image_size, config.batch_size = name, 16, BATCH
    config.model.update(base_width=4, hidden_width=16)
    config.dae.update(depth=2, width_log2=2)
    config.ssim.window = 5
    config.dataset = "brats"  # the DAE's foreground noise takes the batch minimum
    config.eval.batch_size = 8
    config.execution.kernels = "xla"
    return config


def _random_vgg_file(out):
    from ae4ad_jax import family_models, vgg_weights

    rng = np.random.default_rng(0)
    arrays = {}
    convs = [layer for layer in family_models.VGG_LAYERS if layer != "pool"]
    for (_, fan_in, features), index in zip(convs, vgg_weights.TORCHVISION_INDICES,
                                            strict=True):
        arrays[f"features.{index}.weight"] = rng.uniform(
            -1, 1, (features, fan_in, 3, 3)).astype(np.float32) / np.sqrt(9 * fan_in)
        arrays[f"features.{index}.bias"] = np.zeros(features, np.float32)
    path = os.path.join(out, "vgg19.npz")
    np.savez(path, **arrays)
    return path


def _layout(shape, form):
    return sharding.Layout(jax.sharding.Mesh(
        np.asarray(jax.devices()[:shape[0] * shape[1]]).reshape(shape),
        (sharding.MEMBER, sharding.DATA)), form)


def _run(config, members, layout, images, test_images):
    method = methods.create(config)
    state = train.create_train_state(config, method, members)
    # SGD: parameter changes are the gradients themselves. At 0.05 two methods train
    # unstably here and amplify rounding step after step (their first steps agree to
    # 1e-6): GANomaly (MSE weighted 50, an adversarial game) and the Constrained AE (its
    # latent-consistency gradients are large while the code is unnormalised).
    sgd = optax.sgd(LEARNING_RATES.get(config.method, 0.05))
    state = sharding.place(state.replace(tx=sgd, opt_state=sgd.init(state.params)), layout,
                           sharding.MEMBERS)
    plan = execution.Plan(kernels="xla", lowering="vmap", loop="host", donate=False, chunk=0)
    rows = sharding.place_rows(images, layout)
    losses = []
    for epoch in range(1, EPOCHS + 1):
        state, metrics = train.train_epoch(state, rows, epoch, method=method,
                                           batch_size=BATCH, plan=plan, layout=layout)
        losses.append(sharding.to_host(metrics["loss"]))
    scores = train.score_members(state, test_images, config=config, method=method, plan=plan,
                                 layout=layout)
    host = sharding.to_host(state)
    results = []
    for m, member in enumerate(members):
        one = ensemble.member(host, m)
        own = ensemble.resize_latent((one.params, one.batch_stats), member["latent_size"])
        leaves = jax.tree_util.tree_leaves(own)
        results.append({"losses": np.concatenate(losses, axis=1)[m],
                        "score": scores["score"][m],
                        **{f"leaf{i}": leaf for i, leaf in enumerate(leaves)}})
    return results


def main(out, names):
    jax.config.update("jax_disable_most_optimizations", True)
    assert len(jax.devices()) == 8, jax.devices()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (NUM_IMAGES, 16, 16, 1), dtype=np.uint8)
    images[:, :2] = 0  # a dark border: the MRI foreground rule has a background to skip
    test_images = rng.integers(0, 256, (11, 16, 16, 1), dtype=np.uint8)
    for name in names:
        config = _config(name)
        config.perceptual.vgg_weights = _random_vgg_file(out) if name == "ae-perceptual" else ""
        members = _members(name)
        for m, member in enumerate(members):
            [alone] = _run(config, [member], _layout((1, 1), "none"), images, test_images)
            np.savez(os.path.join(out, f"{name}_alone{m}.npz"), **alone)
        for m, result in enumerate(_run(config, members, _layout((2, 4), "mesh"), images,
                                        test_images)):
            np.savez(os.path.join(out, f"{name}_mesh{m}.npz"), **result)
        print(name, "done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
