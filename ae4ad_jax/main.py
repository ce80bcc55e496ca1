"""Command line: train and evaluate one config (or compare the methods it names).

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default \
        [--config.latent_size=4] [--eval_only]

Exit status 0 on success; 2 with a one-paragraph message on bad input.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from ae4ad_jax.core.errors import UserError, exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.parallel import distributed
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.training import comparison, loop


def run(config, workdir, eval_only):
    """What the command does, given its parsed flags."""
    if config is None:
        if not eval_only:
            raise UserError("No --config given: name a config file (configs/*.py).")
        config = workdir_lib.load_saved_config(workdir)
    distributed.initialize(config.distributed, os.environ)
    if config.methods:
        return comparison.run_comparison(config, workdir, eval_only=eval_only)
    return loop.train_and_evaluate(config, workdir, eval_only=eval_only)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    exit_on_user_error(run, flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.eval_only)


if __name__ == "__main__":
    config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/*.py); with --eval_only it defaults to the "
        "workdir's config.json.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and figures.")
    flags.DEFINE_bool("eval_only", False, "Evaluate the workdir's last checkpoint; no training.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
