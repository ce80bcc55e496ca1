"""The paper's Table 2 on `phantom`, for every method of the benchmark family: three seeds
each, d = 16, in one command (about an hour on 2 CPU cores).

    python -m ae4ad_jax.main --config=configs/table1_phantom.py --workdir=runs/table1_phantom
    python -m ae4ad_jax.main --config=configs/table2_phantom.py --workdir=runs/table2_phantom

Writes runs/table2_phantom/<method>/ per method and runs/table2_phantom/table2.md; the
AE[d_opt] row comes from the Table 1 run (run it first, or rebuild the table later
with `python -m ae4ad_jax.report --workdir=runs/table2_phantom`).

Cut for a CPU: fewer training images and epochs, and the DAE's U-Net at 64x64 with
widths 8..128 instead of 128x128 and 64..1024. The perceptual AE needs ImageNet VGG19
weights; add it with `--config.methods=...` and `--config.perceptual.vgg_weights=FILE`.
"""

from ae4ad_jax.methods import NAMES
from configs import default


def get_config():
    config = default.get_config()
    config.methods = tuple(name for name in NAMES if name != "ae-perceptual")
    config.seeds = (0, 1, 2)
    config.table1_workdir = "runs/table1_phantom"
    config.num_epochs = 8
    config.eval_every_epochs = 8
    config.phantom.num_train = 1000
    config.method_overrides.dae = {"image_size": 64, "batch_size": 16}
    config.dae.width_log2 = 3
    return config
