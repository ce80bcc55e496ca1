"""Command line: train and evaluate one config.

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default \
        [--config.latent_size=4] [--eval_only]

Exit status 0 on success; 2 with a one-paragraph message on bad input.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from ae4ad_jax import comparison, cpu_kernels, distributed, run_outputs, train
from ae4ad_jax.errors import UserError, exit_on_user_error

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py); with --eval_only it defaults to the "
    "workdir's config.json.", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and figures.")
flags.DEFINE_bool("eval_only", False, "Evaluate the workdir's last checkpoint; no training.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cpu_kernels.apply_xla_cpu_flags()
    run_outputs.quiet_library_logs()
    exit_on_user_error(run, FLAGS.config, FLAGS.workdir, FLAGS.eval_only)


def run(config, workdir, eval_only):
    if config is None:
        if not eval_only:
            raise UserError("No --config given: name a config file (configs/*.py).")
        config = run_outputs.load_saved_config(workdir)
    distributed.initialize(config.distributed, os.environ)
    if config.methods:
        return comparison.run_comparison(config, workdir, eval_only=eval_only)
    return train.train_and_evaluate(config, workdir, eval_only=eval_only)


if __name__ == "__main__":
    app.run(main)
