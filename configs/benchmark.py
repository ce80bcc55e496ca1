"""Every dataset and the paper's experiments in one config: `benchmark.py:DATASET[,SCOPE]`.

    python -m ae4ad_jax.main --config=configs/benchmark.py:brats --workdir=runs/brats
    python -m ae4ad_jax.main --config=configs/benchmark.py:brats,table1 --workdir=runs/table1_brats
    python -m ae4ad_jax.main --config=configs/benchmark.py:brats,table2 --workdir=runs/table2_brats
    python -m ae4ad_jax.main --config=configs/benchmark.py:brats,family \\
        --config.perceptual.vgg_weights=vgg19.npz --workdir=runs/family_brats

DATASET: phantom (embedded), or one of the MedIAnomaly datasets rsna, vin, brain,
lag, isic, c16, brats (configs/<dataset>.py is the short form of the first line).
SCOPE:
- `ae` (the default): the paper's AE at d = 16, seed 0;
- `table1`: the latent-size ablation, d = 1..128 x three seeds, one ensemble;
- `table2`: AE, VAE, MemAE, CeAE at d = 16, three seeds each, and AE[d_opt] from
  the Table 1 run in runs/table1_DATASET (run it first);
- `family`: every method of the benchmark (the DAE at 128x128, batch 16, as the
  reference; the perceptual AE needs the VGG19 weights file);
- `entropy`, `rate` (phantom only): the latent-entropy and rate-distortion sweeps
  at a large d, on Table 1's data and schedule;
- `claim`: the paper's claim tested (issue #27): d in {1, 4, 16, 64} x lambda_R in
  {0, 1e-4, 1e-3} x three seeds with the learned rate, in one program; its report
  adds claim.md and claim.png (reporting/claim.py). `configs/claim_phantom.py` is the
  short form on phantom.
Real datasets follow the reference's protocol (250 epochs, 600 for Brain Tumor).
On `phantom` every scope is cut to minutes on a CPU: fewer images and epochs, five
latent sizes x two seeds for Table 1, and the DAE's U-Net at 64x64 and narrower;
the family leaves out the perceptual AE (no VGG19 file here).
"""

from ae4ad_jax.core import datasets
from ae4ad_jax.methods import registry
from configs import default

PAPER_LATENT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
PAPER_SEEDS = (0, 1, 2)
SCOPES = ("ae", "table1", "table2", "family", "entropy", "rate", "claim")


def _phantom(config, scope):
    """Cuts for a CPU: the whole Table 1 curve, or the method family, in minutes."""
    if scope in ("table1", "entropy", "rate"):
        config.latent_sizes, config.seeds = (1, 4, 16, 64, 256), (0, 1)
    if scope in ("table1", "entropy", "rate", "claim"):  # the claim keeps its d and seeds
        config.num_epochs, config.eval_every_epochs = 10, 10
        config.phantom.num_train = 1500
    if scope in ("table2", "family"):
        config.num_epochs, config.eval_every_epochs = 8, 8
        config.phantom.num_train = 1000
        config.method_overrides.dae = {"image_size": 64, "batch_size": 16}
        config.dae.width_log2 = 3
    if scope == "family":
        config.methods = tuple(name for name in registry.NAMES if name != "ae-perceptual")
    if scope == "entropy":
        config.latent_sizes, config.seeds = (256,), (0,)
        config.entropy_weights = (0.0, 0.01, 0.1, 1.0)
    if scope == "rate":
        config.latent_sizes, config.seeds = (64,), (0, 1, 2)
        config.val_fraction = 0.1
        config.rate.enabled = True
        config.rate_weights = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


def get_config(arg="phantom"):
    dataset, _, scope = arg.partition(",")
    scope = scope or "ae"
    if dataset not in ("phantom", *datasets.BENCHMARK) or scope not in SCOPES:
        raise ValueError(f"configs/benchmark.py:{arg}: the argument is DATASET[,SCOPE] with "
                         f"DATASET one of phantom, {', '.join(datasets.BENCHMARK)} and SCOPE "
                         f"one of {', '.join(SCOPES)}.")
    if dataset != "phantom" and scope in ("entropy", "rate"):
        raise ValueError(f"configs/benchmark.py:{arg}: the {scope} sweep is defined for "
                         "phantom only; set its keys on the command line for other data.")
    config = default.get_config()
    config.dataset = dataset
    if dataset != "phantom":
        config.num_epochs = datasets.SPECS[dataset].epochs
    if scope == "table1":
        config.latent_sizes, config.seeds = PAPER_LATENT_SIZES, PAPER_SEEDS
    if scope == "claim":
        config.latent_sizes, config.seeds = (1, 4, 16, 64), PAPER_SEEDS
        config.rate.enabled, config.rate_weights = True, (0.0, 1e-4, 1e-3)
        config.val_fraction = 0.1  # held-out normals: thresholds, colours, label-free choices
    if scope in ("table2", "family"):
        config.methods = registry.NAMES if scope == "family" else registry.TABLE2
        config.seeds = PAPER_SEEDS
        config.table1_workdir = f"runs/table1_{dataset}"
    if dataset == "phantom":
        _phantom(config, scope)
    return config
