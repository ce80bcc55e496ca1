"""The tables: Table 1 (metrics against d, and the weight axes where swept), the rate sweep,
and Table 2 (methods side by side), from the final metrics of finished runs, with the
one cell format they share.

Table 1 groups members by latent size d (and entropy weight lambda_H, rate weight
lambda_R, where swept): mean and standard deviation over seeds (np.std, ddof=0),
metrics in percent, latent entropies in nats, the oracle d next to the label-free
choice of `select_latent_size`. Table 2 lists each method at the config's d, and
the paper's AE[d_opt] row from a Table 1 run (the d with the best mean AUROC: an
oracle choice, as in the paper).
"""

import csv
import os

import numpy as np

from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.estimators.entropy import ESTIMATORS
from ae4ad_jax.runs import results

# The code scores' AUROC (evaluation/code_scores.py), beside the reconstruction score's.
CODE_COLUMNS = tuple((f"auroc_{name}", f"AUROC {label}", 100) for name, label in (
    ("code_density", "dens"), ("code_knn", "kNN"), ("rate", "rate"),
    ("combined_code_density", "rec+dens"), ("combined_code_knn", "rec+kNN"),
    ("combined_rate", "rec+rate")))
TABLE_COLUMNS = (("auroc", "AUROC", 100), ("ap", "AP", 100), ("pixel_ap", "AP_pix", 100),
                 ("dice_best", "best Dice*", 100)) + tuple(
    (f"entropy_{m}_train_normal", f"H_{m}(Z) nats", 1) for m in ESTIMATORS) + tuple(
    (f"entropy_norm_{m}_train_normal", f"H_{m}(Z_norm) nats", 1) for m in ESTIMATORS) + (
    ("rate_bits_train_normal", "rate bits", 1),) + CODE_COLUMNS
# Ensemble axes besides d, in the order of their columns: (member key, column name).
WEIGHT_AXES = (("entropy_weight", "lambda_H"), ("rate_weight", "lambda_R"))
IN_RANGE = "_in_range"  # suffix of the 0/1 flags: (d, N) in the estimator's validated range
ERROR_COLUMNS = (("recon_error_train_normal", "train normal"),
                 ("recon_error_test_normal", "test normal"),
                 ("recon_error_test_abnormal", "test abnormal"))


def read_rows(workdirs) -> list[dict]:
    """Every member's final metrics row of finished runs."""
    return [row for workdir in workdirs for row in results.read_summary(workdir)["metrics"]]


SELECTION_TOLERANCE = 0.05


def aggregate(rows) -> list[dict]:
    """One dict per (latent size, entropy weight, rate weight): seeds, mean and std of every
    metric; a validated-range flag is 1 only when it is 1 for every seed."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["latent_size"],) + tuple(row.get(axis) for axis, _ in WEIGHT_AXES)
        groups.setdefault(key, []).append(row)
    skip = ("latent_size", "seed", "member") + tuple(axis for axis, _ in WEIGHT_AXES)
    table = []
    for key in sorted(groups, key=lambda k: tuple(v or 0.0 for v in k)):
        group = groups[key]
        entry = {"latent_size": key[0], "seeds": sorted(r["seed"] for r in group)}
        for (axis, _), weight in zip(WEIGHT_AXES, key[1:], strict=True):
            if weight is not None:
                entry[axis] = weight
        for name in group[0]:
            if name.endswith(IN_RANGE):
                entry[name] = min(int(r.get(name, 0)) for r in group)
                continue
            values = [r[name] for r in group if isinstance(r.get(name), float)]
            if len(values) == len(group) and name not in skip:
                entry[name] = (float(np.mean(values)), float(np.std(values)))
        table.append(entry)
    return table


def is_plain(entry) -> bool:
    """No entropy or rate weight: the paper's AE at that d."""
    return not any(entry.get(axis) for axis, _ in WEIGHT_AXES)


def select_latent_size(table, tolerance=SELECTION_TOLERANCE):
    """A choice of d that uses normal images only: the smallest d whose reconstruction
    error of held-out normal images (of training normals when no split is held out) is
    within `tolerance` of the lowest. Returns (d, the key it used)."""
    key = ("recon_error_val_normal" if all("recon_error_val_normal" in e for e in table)
           else "recon_error_train_normal")
    plain = [e for e in table if is_plain(e)]
    best = min(e[key][0] for e in plain)
    chosen = min(e["latent_size"] for e in plain if e[key][0] <= (1 + tolerance) * best)
    return chosen, key


def cell(entry, key, scale=100, digits=1) -> str:
    """`mean ± std` of an aggregated metric over its seeds (the mean alone for one seed; in
    percent by default), "-" when absent, with † when it lies outside its estimator's
    validated range."""
    if key not in entry:
        return "-"
    mean, std = entry[key]
    outside = entry.get(key + IN_RANGE) == 0
    spread = f" ± {scale * std:.{digits}f}" if len(entry.get("seeds", (0, 1))) > 1 else ""
    return f"{scale * mean:.{digits}f}{spread}" + ("†" if outside else "")


def _axes(table):
    return [(axis, name) for axis, name in WEIGHT_AXES if any(axis in e for e in table)]


def _where(entry, axes):
    return f"d = {entry['latent_size']}" + "".join(
        f", {name} = {entry.get(axis, 0.0):g}" for axis, name in axes)


NOTES = ["*Best Dice is an oracle figure: its threshold is chosen with the test masks.",
         "AUROC dens, kNN, rate: scores of the code (density of normal codes, distance to "
         "the k-th training-normal code, bits); rec+...: the reconstruction score plus that "
         "score, each standardised on normal images. Pixel maps (AP_pix, Dice) are the "
         "reconstruction maps'.",
         "†Outside the range of d and N where the known-answer tests validate the estimator "
         "(docs/entropy.md)."]


def write_table1(table, out_dir) -> str:
    """table1.md and table1.csv of an aggregated table; returns the markdown."""
    columns = [c for c in TABLE_COLUMNS if any(c[0] in e for e in table)]
    axes = _axes(table)
    lines = ["| d | " + "".join(f"{name} | " for _, name in axes) + "seeds | "
             + " | ".join(name for _, name, _ in columns) + " |",
             "|---" * (len(columns) + 2 + len(axes)) + "|"]
    for entry in reversed(table):  # largest d first, as the paper
        weights = "".join(f"{entry.get(axis, 0.0):g} | " for axis, _ in axes)
        lines.append(f"| {entry['latent_size']} | {weights}{len(entry['seeds'])} | "
                     + " | ".join(cell(entry, k, scale) for k, _, scale in columns) + " |")
    best = max(table, key=lambda e: e["auroc"][0])
    seeds = ("Mean ± std over seeds" if any(len(e["seeds"]) > 1 for e in table)
             else "One seed")
    lines += ["", f"{seeds}; metrics in percent, H(Z) of train-normal codes in "
              "nats (Z_norm: the code standardised per unit), the learned rate in bits per "
              "train-normal image."]
    if len(table) > 1:  # a choice among the rows
        lines.append(f"Oracle: best AUROC at {_where(best, axes)} "
                     f"({100 * best['auroc'][0]:.1f}; chosen with test labels).")
    if len({e["latent_size"] for e in table if is_plain(e)}) > 1:
        chosen, key = select_latent_size(table)
        chosen_auroc = next(e["auroc"][0] for e in table
                            if e["latent_size"] == chosen and is_plain(e))
        lines.append(f"Label-free choice: d = {chosen} ({100 * chosen_auroc:.1f}), the smallest "
                     f"d whose {key} is within {100 * SELECTION_TOLERANCE:.0f}% of the lowest.")
    lines += NOTES
    files.write_text(os.path.join(out_dir, "table1.md"), "\n".join(lines) + "\n")
    _write_csv(table, axes, os.path.join(out_dir, "table1.csv"))
    return "\n".join(lines)


def _write_csv(table, axes, path):
    """One row per entry: d, the weight axes, seeds, then mean and std of every metric
    (no std for one seed) and the validated-range flags."""
    metrics = sorted({k for e in table for k, v in e.items() if isinstance(v, tuple)})
    flags = sorted({k for e in table for k in e if k.endswith(IN_RANGE)})
    with files.atomic_path(path) as partial, open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["latent_size", *(axis for axis, _ in axes), "num_seeds"]
                        + [f"{k}_{s}" for k in metrics for s in ("mean", "std")] + flags)
        for e in table:
            writer.writerow([e["latent_size"], *(e.get(axis, 0.0) for axis, _ in axes),
                             len(e["seeds"])]
                            + [e[k][i] if k in e and (i == 0 or len(e["seeds"]) > 1) else ""
                               for k in metrics for i in (0, 1)]
                            + [e.get(k, "") for k in flags])


# ----------------------------------------------------------------------------- rate sweeps

RATE_COLUMNS = (("auroc", "AUROC", 100, 1), ("ap", "AP", 100, 1), ("pixel_ap", "AP_pix", 100, 1),
                ("rate_bits_test_abnormal", "bits, test abnormal", 1, 1),
                ("entropy_norm_gaussian_train_normal", "H_gaussian(Z_norm) nats", 1, 1))


def held_out(table, name):
    """`{name}_val_normal` when every entry has it (held-out normals), else train normal."""
    key = f"{name}_val_normal"
    return key if all(key in e for e in table) else f"{name}_train_normal"


def select_rate_weight(entries):
    """A label-free choice of lambda_R among `entries` (one d): the knee of the normal
    images' rate-distortion curve, i.e. the point farthest below the chord joining its
    ends once rate and distortion are scaled to [0, 1]. Returns (entry, keys used)."""
    rate_key, error_key = held_out(entries, "rate_bits"), held_out(entries,
                                                                    "recon_error")
    points = sorted(entries, key=lambda e: e[rate_key][0])
    rates = np.array([e[rate_key][0] for e in points])
    errors = np.array([e[error_key][0] for e in points])
    if len(points) < 3 or np.ptp(rates) == 0 or np.ptp(errors) == 0:
        return points[int(np.argmin(errors))], (rate_key, error_key)
    r = (rates - rates[0]) / np.ptp(rates)
    e = (errors - errors.min()) / np.ptp(errors)
    chord = e[0] + (e[-1] - e[0]) * r
    return points[int(np.argmax(chord - e))], (rate_key, error_key)


def write_rate_table(table, out_dir) -> str:
    """rate.md: per d, the lambda_R sweep with rate and distortion of normal images, the
    detection metrics, and the label-free lambda next to the oracle."""
    lines = []
    for d in sorted({e["latent_size"] for e in table if "rate_weight" in e}):
        entries = [e for e in table if e["latent_size"] == d and "rate_weight" in e]
        rate_key, error_key = held_out(entries, "rate_bits"), held_out(entries,
                                                                          "recon_error")
        where = rate_key.removeprefix("rate_bits_").replace("_", " ")
        columns = ((rate_key, f"bits, {where}", 1, 1), (error_key, f"MSE, {where}", 1, 4),
                   *RATE_COLUMNS)
        columns = [c for c in columns if any(c[0] in e for e in entries)]
        lines += [f"Latent size d = {d}.", "",
                  "| lambda_R | seeds | " + " | ".join(c[1] for c in columns) + " |",
                  "|---" * (len(columns) + 2) + "|"]
        for e in entries:
            lines.append(f"| {e['rate_weight']:g} | {len(e['seeds'])} | " + " | ".join(
                cell(e, key, scale, digits) for key, _, scale, digits in columns) + " |")
        chosen, _ = select_rate_weight(entries)
        best = max(entries, key=lambda e: e["auroc"][0])
        lines += ["", f"Label-free choice: lambda_R = {chosen['rate_weight']:g} (AUROC "
                  f"{100 * chosen['auroc'][0]:.1f}), the knee of {error_key} against "
                  f"{rate_key}.",
                  f"Oracle: lambda_R = {best['rate_weight']:g} (AUROC "
                  f"{100 * best['auroc'][0]:.1f}; chosen with test labels).", ""]
    lines += ["Mean ± std over seeds; AUROC, AP and AP_pix in percent; bits per image of the "
              "quantised code under the learned density."] + NOTES[1:]
    markdown = "\n".join(lines) + "\n"
    files.write_text(os.path.join(out_dir, "rate.md"), markdown)
    return markdown


# ----------------------------------------------------------------------------- Table 2

TABLE2_COLUMNS = (("auroc", "AUROC"), ("ap", "AP"), ("pixel_ap", "AP_pix"),
                  ("dice_best", "Dice*")) + tuple((key, name) for key, name, _ in CODE_COLUMNS)
TABLE2_FILE, TABLE2_CSV = "table2.md", "table2.csv"
# The CSV adds each code score's AP to the table's columns.
TABLE2_CSV_KEYS = tuple(key for key, _ in TABLE2_COLUMNS) + tuple(
    key.replace("auroc_", "ap_", 1) for key, _, _ in CODE_COLUMNS)


def method_entry(workdir, latent_size) -> dict:
    """A method run's seeds, and mean and std over them of the Table 2 metrics at
    `latent_size` (a method without a latent code has one size), without entropy weights."""
    rows = [r for r in read_rows([workdir]) if not r.get("entropy_weight")]
    rows = [r for r in rows if r["latent_size"] == latent_size] or rows
    entry = {"seeds": sorted(r["seed"] for r in rows)}
    for key in TABLE2_CSV_KEYS:
        values = [r[key] for r in rows if isinstance(r.get(key), float)]
        if len(values) == len(rows):
            entry[key] = (float(np.mean(values)), float(np.std(values)))
    return entry


def _best_ae(table1_workdir):
    """(d_opt, its entry) from a finished Table 1 workdir, or (None, why not)."""
    if not table1_workdir:
        return None, "No Table 1 run given (`table1_workdir`): no AE[d_opt] row."
    try:
        table = aggregate(read_rows([table1_workdir]))
    except UserError:
        return None, (f"No finished Table 1 run in {table1_workdir} yet: no AE[d_opt] row "
                      "(run its config, then `python -m ae4ad_jax.report` on this workdir).")
    best = max((e for e in table if not e.get("entropy_weight")), key=lambda e: e["auroc"][0])
    return (best["latent_size"], best), (
        f"AE[d_opt] is the Table 1 run in {table1_workdir} at its best mean AUROC (chosen "
        "with test labels, as the paper).")


def table2_rows(method_workdirs: dict, latent_size: int, table1_workdir: str):
    """([(row label, entry)], note): each method's run ({method: workdir}) at `latent_size`,
    then AE[d_opt] from the Table 1 run, when it has finished."""
    rows = [(name, method_entry(workdir, latent_size))
            for name, workdir in method_workdirs.items()]
    best, note = _best_ae(table1_workdir)
    if best is not None:
        rows.append((f"AE[d_opt] (d = {best[0]})", best[1]))
    return rows, note


def table2_markdown(dataset, latent_size, rows, note) -> str:
    columns = [(k, name) for k, name in TABLE2_COLUMNS if any(k in e for _, e in rows)]
    lines = [f"Dataset {dataset}, d = {latent_size}.", "",
             "| method | seeds | " + " | ".join(name for _, name in columns) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for name, entry in rows:
        lines.append(f"| {name} | {len(entry['seeds'])} | "
                     + " | ".join(cell(entry, k) for k, _ in columns) + " |")
    lines += ["", "Mean ± std over seeds (np.std, ddof=0), in percent. " + note, *NOTES[:2]]
    return "\n".join(lines) + "\n"


def write_table2(out_dir, dataset, latent_size, rows, note) -> str:
    """table2.md and table2.csv in `out_dir`; returns the markdown."""
    markdown = table2_markdown(dataset, latent_size, rows, note)
    files.write_text(os.path.join(out_dir, TABLE2_FILE), markdown)
    with files.atomic_path(os.path.join(out_dir, TABLE2_CSV)) as partial, \
            open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "num_seeds"] + [f"{k}_{s}" for k in TABLE2_CSV_KEYS
                                                   for s in ("mean", "std")])
        for name, entry in rows:
            writer.writerow([name, len(entry["seeds"])] + [
                entry[k][i] if k in entry else "" for k in TABLE2_CSV_KEYS for i in (0, 1)])
    return markdown
