"""Method comparisons: several methods on one dataset in one command, and their table.

A config with `methods = (...)` runs each method, as its own ensemble over seeds
(and latent sizes, where set), in `WORKDIR/<method>/`; a finished method's run is
resumed at its last checkpoint, so a stopped comparison continues where it stopped.
Then `WORKDIR/table2.md` and `table2.csv` list every method (`reporting/tables.py`).
"""

import os
import time

from ae4ad_jax.config import checks
from ae4ad_jax.core import progress
from ae4ad_jax.core.logs import log
from ae4ad_jax.data import pipeline
from ae4ad_jax.reporting import build
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.training import loop


def method_config(config, name):
    """The single-method config of `name` within a comparison config."""
    single = config.copy_and_resolve_references()
    single.method, single.methods = name, ()
    return single


def run_comparison(config, workdir, eval_only=False, take_over_lock=False) -> str:
    """Trains and evaluates every method of `config.methods`; returns the table. The
    comparison's workdir is locked while it runs, and so is each method's."""
    checks.validate_config(config)
    config = pipeline.resolve_channels(config)
    with loop.workdir_lock(workdir, take_over_lock, eval_only):
        workdir_lib.prepare_workdir(workdir, config, must_exist=eval_only)
        start = time.time()
        for i, name in enumerate(config.methods):
            seconds_left = (time.time() - start) / max(i, 1) * (len(config.methods) - i)
            left = f", about {progress.format_duration(seconds_left)} left" if i else ""
            log(f"== method {name} ({i + 1} of {len(config.methods)}{left})")
            loop.train_and_evaluate(method_config(config, name), os.path.join(workdir, name),
                                    eval_only=eval_only, take_over_lock=take_over_lock)
        return build.write_comparison_table(workdir)
