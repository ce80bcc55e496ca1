"""Command line: train and evaluate one config (or compare the methods it names).

    python -m ae4ad_jax.main --config=configs/default.py --workdir=runs/default \
        [--config.latent_size=4] [--eval_only]
    python -m ae4ad_jax.main --workdir=runs/default --eval_only [--data_dir=...] \
        [--tfds_dir=...]

`--eval_only` without `--config` evaluates with the workdir's config.json, except
where things are on this machine (`data_dir`, `tfds_dir`, `compilation_cache`): those
are this machine's defaults or the flags', never the workdir's.

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

from ae4ad_jax.config import checks
from ae4ad_jax.core.errors import UserError, exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.data import pipeline
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.parallel import distributed
from ae4ad_jax.training import comparison, loop, preemption


def saved_config(workdir, data_dir="", tfds_dir=pipeline.TFDS_DIR):
    """A workdir's config.json for `--eval_only`, with this machine's places: where the raw
    data and prepared datasets are (`data_dir`, `tfds_dir`, from the command line) and the
    default compilation cache, never the workdir's own (they name another machine's, or a
    stranger's, folders)."""
    config = checks.read_saved_config(workdir)
    config.data_dir, config.tfds_dir, config.compilation_cache = data_dir, tfds_dir, "auto"
    return config


def run(config, workdir, eval_only, take_over_lock=False, places=None):
    """What the command does, given its parsed flags; `places` ({"data_dir", "tfds_dir"})
    are given only without a config."""
    if config is None:
        if not eval_only:
            raise UserError("No --config given: name a config file (configs/*.py).")
        config = saved_config(workdir, **(places or {}))
    elif places:
        raise UserError(f"--{next(iter(places))} is for --eval_only without --config; with a "
                        "config, set it as --config.data_dir / --config.tfds_dir.")
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
    f = flags.FLAGS
    places = {name: f[name].value for name in ("data_dir", "tfds_dir") if f[name].present}
    exit_on_user_error(run, f.config, f.workdir, f.eval_only, f.take_over_lock, places)


if __name__ == "__main__":
    config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/*.py); with --eval_only it defaults to the "
        "workdir's config.json.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and figures.")
    flags.DEFINE_bool("eval_only", False, "Evaluate the workdir's last checkpoint; no training.")
    flags.DEFINE_string("data_dir", "", "With --eval_only and no --config: the raw data "
                        "folder on this machine (a workdir's own is never used).")
    flags.DEFINE_string("tfds_dir", pipeline.TFDS_DIR, "With --eval_only and no --config: "
                        "where prepared datasets are on this machine.")
    flags.DEFINE_bool("take_over_lock", False, "Take over the workdir's lock held by a run on "
                      "another host (only once that run has ended).")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
