"""The paper's AE (d = 16) on the embedded `phantom` dataset; a few minutes on 2 CPU cores.

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default

Every other config starts from this one (`benchmark.py` for the datasets and the
paper's tables, `test.py` for tests) and overrides what differs. The optimiser,
batch size, architecture and preprocessing are the reference's (docs/methods.md);
only the number of epochs is cut for `phantom`. The declared groups (`model`,
`rate`, each method's own, `input_limits`) take their defaults from their
declarations (ae4ad_jax/methods/registry.py, ae4ad_jax/data/decoding.py).
"""

import ml_collections

from ae4ad_jax.core import settings
from ae4ad_jax.data import decoding, pipeline
from ae4ad_jax.methods import registry


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
    config.latent_size = 16
    # An ensemble trained together: every (latent size, seed) pair is a member.
    # Empty tuples mean the single member (latent_size, seed).
    config.latent_sizes = ()
    config.seeds = ()
    config.image_size = 64
    config.channels = 0  # 0: the dataset's (Camelyon16 RGB, the others gray); 1 or 3
    config.seed = 0
    config.val_fraction = 0.0  # normal training images held out (0 = the paper's protocol)

    config.num_epochs = 20
    config.batch_size = 64
    config.learning_rate = 1e-3
    config.eval_every_epochs = 25  # also evaluated after epoch 1 and the last epoch
    config.checkpoint_every_epochs = 5  # also saved at every evaluation
    config.checkpoints_to_keep = 3  # the newest epoch checkpoints kept (at least 2)

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
    # Latent entropy H(Z) of train-normal, test-normal and test-abnormal codes at every
    # evaluation (ae4ad_jax/estimators/entropy.py): any of "gaussian", "knn", "renyi".
    config.entropy_estimators = ("gaussian", "knn")
    # Entropy-controlled training: loss = MSE + entropy_weight * (matrix Renyi-2 entropy of
    # the batch's latent codes). entropy_weights, when set, is an ensemble axis.
    config.entropy_weight = 0.0
    config.entropy_weights = ()
    # Bootstrap resamples behind each entropy estimate's 95% interval (0: no intervals).
    config.entropy_bootstrap = 50
    # The learned rate (group `rate`, ae4ad_jax/nets/rate.py): with rate.enabled the decoder
    # reads the latent code standardised per unit and quantised with step rate.step (in
    # standard deviations), and every evaluation reports the code's rate in bits per image
    # under a learned factorised density (hidden widths rate.filters, its own Adam
    # learning rate). Rate-distortion training: loss = reconstruction + rate_weight *
    # bits; rate_weights, when set, is an ensemble axis.
    config.rate_weight = 0.0
    config.rate_weights = ()
    # Scoring batch (it does not change the scores), examples per class in examples.png,
    # and the false-positive rate on normal images that sets each member's decision
    # threshold (held-out normals with val_fraction, else the training normals).
    # code_knn_k: the neighbour whose distance is the code_knn score (evaluation/code_scores.py).
    config.eval = ml_collections.ConfigDict(dict(batch_size=64, num_examples=4,
                                                 false_positive_rate=0.05, code_knn_k=5))
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
    config.execution = ml_collections.ConfigDict(dict(
        kernels="auto", member_lowering="auto", epoch_loop="auto", donate_state="auto",
        member_chunk_size=0, steps_per_program=0, memory_limit_bytes=0))
    return config
