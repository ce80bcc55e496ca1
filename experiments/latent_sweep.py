"""Trains one config at several latent sizes, one run after another, and prints a table.

    python experiments/latent_sweep.py --config=configs/default.py --workdir=runs/sweep \
        --latent_sizes=2,16,128

Each latent size gets its own workdir (WORKDIR/d{d}); finished runs are reused,
so an interrupted sweep continues where it stopped.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ae4ad_jax import reporting, train  # noqa: E402
from ae4ad_jax.errors import exit_on_user_error  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Parent folder of the per-d workdirs.")
flags.DEFINE_list("latent_sizes", ["2", "16", "128"], "Latent sizes to train.")
flags.mark_flags_as_required(["config", "workdir"])

COLUMNS = ("auroc", "ap", "pixel_auroc", "pixel_ap", "dice_best", "recon_error_train_normal",
           "recon_error_test_normal", "recon_error_test_abnormal")


def main(argv):
    del argv
    reporting.quiet_library_logs()
    rows = []
    for d in map(int, FLAGS.latent_sizes):
        config = FLAGS.config.copy_and_resolve_references()
        config.unlock()
        config.latent_size = d
        summary = exit_on_user_error(train.train_and_evaluate, config,
                                     os.path.join(FLAGS.workdir, f"d{d}"))
        rows.append((d, summary["metrics"][0]))
    print("| d | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for d, row in rows:
        print(f"| {d} | " + " | ".join(f"{row.get(c, float('nan')):.4f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    app.run(main)
