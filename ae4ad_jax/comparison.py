"""Method comparisons: several methods on one dataset in one command, and their table.

A config with `methods = (...)` runs each method, as its own ensemble over seeds
(and latent sizes, where set), in `WORKDIR/<method>/`; a finished method's run is
resumed at its last checkpoint, so a stopped comparison continues where it stopped.
Then `WORKDIR/table2.md` and `table2.csv` list every method: mean ± standard
deviation over seeds of AUROC and AP (and pixel AP and best Dice where masks exist)
at the config's latent size, and the paper's AE[d_opt] row taken from the Table 1
run in `table1_workdir` (the d with the best mean AUROC: an oracle choice, as in the
paper).
"""

import csv
import json
import os
import time

import numpy as np

from ae4ad_jax import progress, report, run_outputs
from ae4ad_jax.errors import UserError

COLUMNS = (("auroc", "AUROC"), ("ap", "AP"), ("pixel_ap", "AP_pix"), ("dice_best", "Dice*"))
TABLE_FILE, CSV_FILE = "table2.md", "table2.csv"


def method_config(config, name):
    """The single-method config of `name` within a comparison config."""
    single = config.copy_and_resolve_references()
    single.method, single.methods = name, ()
    return single


def run_comparison(config, workdir, eval_only=False) -> str:
    """Trains and evaluates every method of `config.methods`; returns the table."""
    from ae4ad_jax import config_checks, train

    config_checks.validate_config(config)
    run_outputs.prepare_workdir(workdir, config, must_exist=eval_only)
    start = time.time()
    for i, name in enumerate(config.methods):
        seconds_left = (time.time() - start) / max(i, 1) * (len(config.methods) - i)
        left = f", about {progress.format_duration(seconds_left)} left" if i else ""
        run_outputs.log(f"== method {name} ({i + 1} of {len(config.methods)}{left})")
        train.train_and_evaluate(method_config(config, name), os.path.join(workdir, name),
                                 eval_only=eval_only)
    return write_table(workdir)


def _summary_rows(workdir, latent_size):
    rows = [r for r in report.read_rows([workdir]) if not r.get("entropy_weight")]
    at_d = [r for r in rows if r["latent_size"] == latent_size]
    return at_d or rows  # a method without a latent code (the DAE) has one size


def _entry(rows, seeds_of="seed"):
    entry = {"seeds": sorted(r[seeds_of] for r in rows)}
    for key, _ in COLUMNS:
        values = [r[key] for r in rows if isinstance(r.get(key), float)]
        if len(values) == len(rows):
            entry[key] = (float(np.mean(values)), float(np.std(values)))
    return entry


def _best_ae(table1_workdir):
    """(d_opt, its entry) from a finished Table 1 workdir, or (None, why not)."""
    if not table1_workdir:
        return None, "No Table 1 run given (`table1_workdir`): no AE[d_opt] row."
    try:
        table = report.aggregate(report.read_rows([table1_workdir]))
    except UserError:
        return None, (f"No finished Table 1 run in {table1_workdir} yet: no AE[d_opt] row "
                      "(run its config, then `python -m ae4ad_jax.report` on this workdir).")
    best = max((e for e in table if not e.get("entropy_weight")), key=lambda e: e["auroc"][0])
    return (best["latent_size"], best), (
        f"AE[d_opt] is the Table 1 run in {table1_workdir} at its best mean AUROC (chosen "
        "with test labels, as the paper).")


def comparison_table(workdir):
    """Rows (method name, entry) of a finished comparison workdir, and its config."""
    config = run_outputs.load_saved_config(workdir)
    if not config.methods:
        raise UserError(f"Workdir {workdir} is not a method comparison (its config sets no "
                        "`methods`).")
    rows = [(name, _entry(_summary_rows(os.path.join(workdir, name), config.latent_size)))
            for name in config.methods]
    best, note = _best_ae(config.table1_workdir)
    if best is not None:
        rows.append((f"AE[d_opt] (d = {best[0]})", best[1]))
    return rows, config, note


def _cell(entry, key):
    if key not in entry:
        return "-"
    mean, std = entry[key]
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def format_table(rows, config, note) -> str:
    columns = [(k, name) for k, name in COLUMNS if any(k in e for _, e in rows)]
    lines = [f"Dataset {config.dataset}, d = {config.latent_size}.", "",
             "| method | seeds | " + " | ".join(name for _, name in columns) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for name, entry in rows:
        lines.append(f"| {name} | {len(entry['seeds'])} | "
                     + " | ".join(_cell(entry, k) for k, _ in columns) + " |")
    lines += ["", "Mean ± std over seeds (np.std, ddof=0), in percent. " + note,
              "*Best Dice is an oracle figure: its threshold is chosen with the test masks."]
    return "\n".join(lines) + "\n"


def write_table(workdir) -> str:
    rows, config, note = comparison_table(workdir)
    markdown = format_table(rows, config, note)
    with open(os.path.join(workdir, TABLE_FILE), "w") as f:
        f.write(markdown)
    with open(os.path.join(workdir, CSV_FILE), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "num_seeds"] + [f"{k}_{s}" for k, _ in COLUMNS
                                                   for s in ("mean", "std")])
        for name, entry in rows:
            writer.writerow([name, len(entry["seeds"])] + [
                entry[k][i] if k in entry else "" for k, _ in COLUMNS for i in (0, 1)])
    run_outputs.log(f"{os.path.join(workdir, TABLE_FILE)}:\n{markdown}")
    return markdown


def is_comparison(workdir) -> bool:
    try:
        with open(os.path.join(workdir, run_outputs.CONFIG_FILE)) as f:
            return bool(json.load(f).get("methods"))
    except (OSError, ValueError):
        return False
