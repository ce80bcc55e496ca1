"""Command line: train and evaluate one config.

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default \
        [--config.latent_size=4] [--eval_only]

Exit status 0 on success; 2 with a one-paragraph message on bad input.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from ae4ad_jax import reporting, train, validation
from ae4ad_jax.errors import UserError

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
    reporting.quiet_library_logs()
    try:
        config = FLAGS.config
        if config is None:
            if not FLAGS.eval_only:
                raise UserError("No --config given: name a config file (configs/*.py).")
            config = validation.load_saved_config(FLAGS.workdir)
        train.train_and_evaluate(config, FLAGS.workdir, eval_only=FLAGS.eval_only)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
