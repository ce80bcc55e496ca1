"""Command line: train and evaluate one config (or compare the methods it names).

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default \
        [--config.latent_size=4] [--eval_only]

Exit status 0 on success; 2 with a one-paragraph message on bad input; 75 ("requeue
me") after SIGTERM or SIGINT, once the state is saved at a step boundary, and after
losing a process of a multi-process run: the same command then resumes. A workdir in
use by another run is refused; `--take_over_lock` takes over the lock of a run on
another host that has ended.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from ae4ad_jax.core.errors import UserError, exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.parallel import distributed
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.training import comparison, loop, preemption


def run(config, workdir, eval_only, take_over_lock=False):
    """What the command does, given its parsed flags."""
    if config is None:
        if not eval_only:
            raise UserError("No --config given: name a config file (configs/*.py).")
        config = workdir_lib.load_saved_config(workdir)
    distributed.initialize(config.distributed, os.environ)
    try:
        if config.methods:
            return comparison.run_comparison(config, workdir, eval_only=eval_only,
                                             take_over_lock=take_over_lock)
        return loop.train_and_evaluate(config, workdir, eval_only=eval_only,
                                       take_over_lock=take_over_lock)
    except preemption.Stopped as stopped:
        print(stopped, flush=True)
        sys.exit(preemption.REQUEUE_STATUS)
    except (UserError, SystemExit):
        raise
    except Exception as error:
        if distributed.WATCHDOG is not None:  # a collective whose peer died?
            distributed.WATCHDOG.explain(error)
        raise
    finally:
        if distributed.WATCHDOG is not None:
            distributed.WATCHDOG.stop()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    exit_on_user_error(run, flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.eval_only,
                       flags.FLAGS.take_over_lock)


if __name__ == "__main__":
    config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/*.py); with --eval_only it defaults to the "
        "workdir's config.json.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and figures.")
    flags.DEFINE_bool("eval_only", False, "Evaluate the workdir's last checkpoint; no training.")
    flags.DEFINE_bool("take_over_lock", False, "Take over the workdir's lock held by a run on "
                      "another host (only once that run has ended).")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
