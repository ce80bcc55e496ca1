"""The paper's AE (d = 16) on the embedded `phantom` dataset; a few minutes on 2 CPU cores.

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default

Every other config starts from this one (`benchmark.py` for the datasets and the
paper's tables, `test.py` for tests) and overrides what differs. The optimiser,
batch size, architecture and preprocessing are the reference's (docs/methods.md);
only the number of epochs is cut for `phantom`. Declared keys take their defaults
(with their meanings and rules) from their declarations: the run's top-level keys
and `eval` (ae4ad_jax/config/checks.py), `execution` (ae4ad_jax/parallel/execution.py),
`model`, `rate` and each method's own group (ae4ad_jax/methods/), `input_limits`
(ae4ad_jax/data/decoding.py).
"""

import ml_collections

from ae4ad_jax.config import checks
from ae4ad_jax.core import settings
from ae4ad_jax.data import decoding, pipeline
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import execution


def get_config():
    config = ml_collections.ConfigDict()
    config.dataset = "phantom"
    # Where data lives on this machine; `--eval_only` of a saved workdir never takes these
    # (nor compilation_cache) from its config.json: main's --data_dir, --tfds_dir give them.
    config.data_dir = ""  # raw data folder of a real dataset ("" = the dataset's default)
    config.tfds_dir = pipeline.TFDS_DIR  # where prepared datasets are written
    # Caps on what one input file may decode to (ae4ad_jax/data/decoding.py: pixels per
    # image, slices per volume, decoded bytes); a file over them stops the data's
    # preparation naming it.
    config.input_limits = ml_collections.ConfigDict(settings.defaults(decoding.Limits))
    # One of ae4ad_jax.methods.registry.NAMES (the README's method table). `methods`, when set, runs
    # each listed method in WORKDIR/<method> and writes WORKDIR/table2.md, taking AE[d_opt]
    # from the Table 1 run in `table1_workdir`.
    config.method = "ae"
    config.methods = ()
    config.table1_workdir = ""
    # The run's keys (latent size, ensemble axes, image size, epochs, batch, learning rate,
    # evaluation and checkpoint periods, entropy and rate terms): their defaults, meanings
    # and rules are declared in ae4ad_jax/config/checks.py (`Run`).
    config.update(settings.defaults(checks.Run))

    config.optim = ml_collections.ConfigDict(dict(b1=0.9, b2=0.999, eps=1e-8))
    # Declared groups at their declared defaults: `model` (the architecture and compute
    # dtype, nets/autoencoder.py), `rate` (the learned rate, below) and each method's own
    # settings: vae, memae, ceae, ssim, perceptual (vgg_weights: the VGG19 .npz the
    # perceptual AE needs), ganomaly, dae (ae4ad_jax/methods/<method>.py).
    for group, values in registry.config_groups().items():
        config[group] = ml_collections.ConfigDict(values)
    # Top-level keys a method sets when it is the one that runs (the DAE: image_size 128,
    # batch_size 16, as the reference); change or empty them to run it otherwise.
    config.method_overrides = ml_collections.ConfigDict(registry.override_defaults())
    # Scoring batch, examples, the false-positive rate that sets each member's decision
    # threshold, code_knn's k: declared in ae4ad_jax/config/checks.py (`Eval`).
    config.eval = ml_collections.ConfigDict(settings.defaults(checks.Eval))
    config.phantom = ml_collections.ConfigDict(dict(
        num_train=3000, num_test_normal=500, num_test_abnormal=500, seed=0))
    # Devices (ae4ad_jax/parallel/mesh.py and programs.py): "mesh" (jit over a device mesh),
    # "pmap", or "none" (the first device only). mesh_shape = (members, data) splits the
    # ensemble's members over the first axis and each batch over the second; () chooses it
    # from the member count and the device count. Neither changes results.
    config.parallelism = "mesh"
    config.mesh_shape = ()
    # Many processes (ae4ad_jax/parallel/distributed.py): set here, or read from what Cloud TPU,
    # SLURM, Open MPI or Kubernetes (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
    # JAX_PROCESS_ID) set. "auto" starts jax.distributed when a launcher says there
    # are many processes; "yes" always; "no" never.
    config.distributed = ml_collections.ConfigDict(dict(
        initialize="auto", coordinator_address="", num_processes=0, process_id=-1,
        initialization_timeout_s=300, lost_worker_timeout_s=90))
    # JAX's persistent compilation cache: a second run of a config loads its programs
    # instead of compiling them. "auto" = $XDG_CACHE_HOME/ae4ad-jax/jax (~/.cache/...); a
    # folder; or "" (off).
    config.compilation_cache = "auto"
    # How the run is compiled on this backend (ae4ad_jax/parallel/execution.py). These settings
    # never change results; "auto" picks the fast choice for the backend.
    config.execution = ml_collections.ConfigDict(settings.defaults(execution.Execution))
    return config
