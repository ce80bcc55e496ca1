"""The paper's Table 1 and its figures from one or many workdirs.

    python -m ae4ad_jax.report --workdir=runs/table1_brats [--workdir=...] [--out=DIR]

Reads each workdir's `summary.json` (the final metrics of every member),
groups members by latent size d (and entropy weight lambda, where swept), and
writes to `OUT` (default: the first workdir's `report/`): `table1.md` and
`table1.csv` (mean and standard deviation over seeds, np.std with ddof=0;
metrics in percent, latent entropies in nats; the oracle d next to the
label-free choice of `select_latent_size`), `error_vs_d.png` (reconstruction
error of train-normal, test-normal and test-abnormal images against d, the
paper's figure), `auroc_vs_d.png` and, where entropies were recorded,
`entropy_vs_d.png` and `auroc_vs_entropy.png`; then `run_report.py`'s score
histograms, ROC/PR curves and `report.md`, the page that shows them all.
"""

import csv
import json
import os

import numpy as np
from absl import app, flags

from ae4ad_jax import run_report
from ae4ad_jax.entropy import ESTIMATORS
from ae4ad_jax.errors import UserError, exit_on_user_error

TABLE_COLUMNS = (("auroc", "AUROC", 100), ("ap", "AP", 100), ("pixel_ap", "AP_pix", 100),
                 ("dice_best", "best Dice*", 100)) + tuple(
    (f"entropy_{m}_train_normal", f"H_{m}(Z) nats", 1) for m in ESTIMATORS) + tuple(
    (f"entropy_norm_{m}_train_normal", f"H_{m}(Z_norm) nats", 1) for m in ESTIMATORS) + (
    ("rate_bits_train_normal", "rate bits", 1),)
# Ensemble axes besides d, in the order of their columns: (member key, column name).
WEIGHT_AXES = (("entropy_weight", "lambda_H"), ("rate_weight", "lambda_R"))
IN_RANGE = "_in_range"  # suffix of the 0/1 flags: (d, N) in the estimator's validated range
ERROR_COLUMNS = (("recon_error_train_normal", "train normal"),
                 ("recon_error_test_normal", "test normal"),
                 ("recon_error_test_abnormal", "test abnormal"))


def read_rows(workdirs) -> list[dict]:
    rows = []
    for workdir in workdirs:
        path = os.path.join(workdir, "summary.json")
        try:
            with open(path) as f:
                rows.extend(json.load(f)["metrics"])
        except (OSError, ValueError, KeyError) as error:
            raise UserError(f"Cannot read the final metrics {path}: {error}. "
                            "Has the run finished?") from None
    return rows


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


def _is_plain(entry) -> bool:
    """No entropy or rate weight: the paper's AE at that d."""
    return not any(entry.get(axis) for axis, _ in WEIGHT_AXES)


def select_latent_size(table, tolerance=SELECTION_TOLERANCE):
    """A choice of d that uses normal images only: the smallest d whose reconstruction
    error of held-out normal images (of training normals when no split is held out) is
    within `tolerance` of the lowest. Returns (d, the key it used)."""
    key = ("recon_error_val_normal" if all("recon_error_val_normal" in e for e in table)
           else "recon_error_train_normal")
    plain = [e for e in table if _is_plain(e)]
    best = min(e[key][0] for e in plain)
    chosen = min(e["latent_size"] for e in plain if e[key][0] <= (1 + tolerance) * best)
    return chosen, key


def _cell(entry, key, scale, digits=1):
    if key not in entry:
        return "-"
    mean, std = entry[key]
    outside = entry.get(key + IN_RANGE) == 0
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}" + ("†" if outside else "")


def _axes(table):
    return [(axis, name) for axis, name in WEIGHT_AXES if any(axis in e for e in table)]


def _where(entry, axes):
    return f"d = {entry['latent_size']}" + "".join(
        f", {name} = {entry.get(axis, 0.0):g}" for axis, name in axes)


NOTES = ["*Best Dice is an oracle figure: its threshold is chosen with the test masks.",
         "†Outside the range of d and N where the known-answer tests validate the estimator "
         "(docs/entropy.md)."]


def write_table(table, out_dir):
    columns = [c for c in TABLE_COLUMNS if any(c[0] in e for e in table)]
    axes = _axes(table)
    lines = ["| d | " + "".join(f"{name} | " for _, name in axes) + "seeds | "
             + " | ".join(name for _, name, _ in columns) + " |",
             "|---" * (len(columns) + 2 + len(axes)) + "|"]
    for entry in reversed(table):  # largest d first, as the paper
        weights = "".join(f"{entry.get(axis, 0.0):g} | " for axis, _ in axes)
        lines.append(f"| {entry['latent_size']} | {weights}{len(entry['seeds'])} | "
                     + " | ".join(_cell(entry, k, scale) for k, _, scale in columns) + " |")
    best = max(table, key=lambda e: e["auroc"][0])
    lines += ["", "Mean ± std over seeds; metrics in percent, H(Z) of train-normal codes in "
              "nats (Z_norm: the code standardised per unit), the learned rate in bits per "
              "train-normal image.",
              f"Oracle: best AUROC at {_where(best, axes)} ({100 * best['auroc'][0]:.1f}; "
              "chosen with test labels)."]
    if any(_is_plain(e) for e in table):
        chosen, key = select_latent_size(table)
        chosen_auroc = next(e["auroc"][0] for e in table
                            if e["latent_size"] == chosen and _is_plain(e))
        lines.append(f"Label-free choice: d = {chosen} ({100 * chosen_auroc:.1f}), the smallest "
                     f"d whose {key} is within {100 * SELECTION_TOLERANCE:.0f}% of the lowest.")
    lines += NOTES
    with open(os.path.join(out_dir, "table1.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _write_csv(table, axes, os.path.join(out_dir, "table1.csv"))
    return "\n".join(lines)


def _write_csv(table, axes, path):
    """One row per entry: d, the weight axes, seeds, then mean and std of every metric
    and the validated-range flags."""
    metrics = sorted({k for e in table for k, v in e.items() if isinstance(v, tuple)})
    flags = sorted({k for e in table for k in e if k.endswith(IN_RANGE)})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["latent_size", *(axis for axis, _ in axes), "num_seeds"]
                        + [f"{k}_{s}" for k in metrics for s in ("mean", "std")] + flags)
        for e in table:
            writer.writerow([e["latent_size"], *(e.get(axis, 0.0) for axis, _ in axes),
                             len(e["seeds"])]
                            + [e[k][i] if k in e else "" for k in metrics for i in (0, 1)]
                            + [e.get(k, "") for k in flags])


def _plot(table, series, ylabel, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [e for e in table if _is_plain(e)]
    if not table:
        return
    d = [e["latent_size"] for e in table]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in series:
        if all(key in e for e in table):
            mean = np.array([e[key][0] for e in table])
            std = np.array([e[key][1] for e in table])
            ax.errorbar(d, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(d, [str(v) for v in d])
    ax.set_xlabel("latent size d")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- rate sweeps

RATE_COLUMNS = (("auroc", "AUROC", 100, 1), ("ap", "AP", 100, 1), ("pixel_ap", "AP_pix", 100, 1),
                ("rate_bits_test_abnormal", "bits, test abnormal", 1, 1),
                ("entropy_norm_gaussian_train_normal", "H_gaussian(Z_norm) nats", 1, 1))


def _held_out(table, name):
    """`{name}_val_normal` when every entry has it (held-out normals), else train normal."""
    key = f"{name}_val_normal"
    return key if all(key in e for e in table) else f"{name}_train_normal"


def select_rate_weight(entries):
    """A label-free choice of lambda_R among `entries` (one d): the knee of the normal
    images' rate-distortion curve, i.e. the point farthest below the chord joining its
    ends once rate and distortion are scaled to [0, 1]. Returns (entry, keys used)."""
    rate_key, error_key = _held_out(entries, "rate_bits"), _held_out(entries,
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
        rate_key, error_key = _held_out(entries, "rate_bits"), _held_out(entries,
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
                _cell(e, key, scale, digits) for key, _, scale, digits in columns) + " |")
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
    with open(os.path.join(out_dir, "rate.md"), "w") as f:
        f.write(markdown)
    _plot_rate(table, lambda e: e[_held_out(table, "recon_error")],
               f"normal MSE ({_held_out(table, 'recon_error').removeprefix('recon_error_')})",
               os.path.join(out_dir, "rate_vs_distortion.png"))
    _plot_rate(table, lambda e: tuple(100 * v for v in e["auroc"]), "image AUROC (%)",
               os.path.join(out_dir, "auroc_vs_rate.png"))
    return markdown


def _plot_rate(table, y_of, ylabel, path):
    """y against the rate of normal images, one line per d, seeds as error bars in both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate_key = _held_out(table, "rate_bits")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for d in sorted({e["latent_size"] for e in table if "rate_weight" in e}):
        entries = sorted((e for e in table if e["latent_size"] == d and "rate_weight" in e),
                         key=lambda e: e["rate_weight"])  # the curve's parameter
        x = np.array([e[rate_key] for e in entries])
        y = np.array([y_of(e) for e in entries])
        ax.errorbar(x[:, 0], y[:, 0], xerr=x[:, 1], yerr=y[:, 1], marker="o", capsize=3,
                    label=f"d = {d}")
        for e, xi, yi in zip(entries, x[:, 0], y[:, 0], strict=True):
            ax.annotate(f"{e['rate_weight']:g}", (xi, yi), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel(f"rate, bits per image ({rate_key.removeprefix('rate_bits_')})")
    ax.set_ylabel(ylabel)
    ax.set_title("labels: lambda_R", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_comparison_report(workdirs, out_dir=None) -> str:
    """One method table per comparison workdir (dataset), all in OUT/methods.md."""
    from ae4ad_jax import comparison

    tables = [comparison.format_table(*comparison.comparison_table(w)) for w in workdirs]
    for workdir in workdirs:
        comparison.write_table(workdir)
    out_dir = out_dir or workdirs[0]
    os.makedirs(out_dir, exist_ok=True)
    markdown = "\n".join(tables)
    with open(os.path.join(out_dir, "methods.md"), "w") as f:
        f.write(markdown)
    return markdown


def write_report(workdirs, out_dir=None) -> str:
    """Writes the table and plots; returns the markdown table. Method comparisons
    (workdirs of configs with `methods`) get their method tables instead."""
    from ae4ad_jax import comparison

    kinds = {comparison.is_comparison(w) for w in workdirs}
    if kinds == {True}:
        return write_comparison_report(workdirs, out_dir)
    if len(kinds) > 1:
        raise UserError("Give either method-comparison workdirs or single-method workdirs, "
                        "not both.")
    out_dir = out_dir or os.path.join(workdirs[0], "report")
    os.makedirs(out_dir, exist_ok=True)
    table = aggregate(read_rows(workdirs))
    markdown = write_table(table, out_dir)
    _plot(table, ERROR_COLUMNS, "reconstruction error (MSE)",
          os.path.join(out_dir, "error_vs_d.png"))
    _plot(table, (("auroc", "image AUROC"), ("ap", "image AP")), "metric",
          os.path.join(out_dir, "auroc_vs_d.png"))
    entropy_series = [(f"entropy_{m}_{split}", f"{m}, {split.replace('_', ' ')}")
                      for m in ESTIMATORS
                      for split in ("train_normal", "test_normal", "test_abnormal")]
    if any(key in table[0] for key, _ in entropy_series):
        _plot(table, entropy_series, "latent entropy H(Z) (nats)",
              os.path.join(out_dir, "entropy_vs_d.png"))
        _plot_auroc_vs_entropy(table, os.path.join(out_dir, "auroc_vs_entropy.png"))
    if any("rate_weight" in e for e in table):
        markdown += "\n" + write_rate_table(table, out_dir)
    run_report.write_score_figures(workdirs, out_dir)
    run_report.write_page(workdirs, out_dir, markdown)
    return markdown


def _plot_auroc_vs_entropy(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5), squeeze=False)
    for ax, estimator in zip(axes[0], ESTIMATORS, strict=True):
        key = f"entropy_{estimator}_train_normal"
        points = [(e[key][0], e["auroc"][0], e["latent_size"]) for e in table if key in e]
        if not points:
            ax.set_visible(False)
            continue
        x, y, _ = zip(*points, strict=True)
        ax.plot(x, y, marker="o")
        for xi, yi, di in points:
            ax.annotate(f"d={di}", (xi, yi), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
        ax.set_xlabel(f"H_{estimator}(Z) of train-normal codes (nats)")
        ax.set_ylabel("image AUROC")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FLAGS = flags.FLAGS


def main(argv):
    del argv
    print(exit_on_user_error(write_report, FLAGS.workdir, FLAGS.out))


if __name__ == "__main__":
    flags.DEFINE_multi_string("workdir", None, "Workdir(s) of finished runs.")
    flags.DEFINE_string("out", None, "Output folder (default: first workdir's report/).")
    flags.mark_flag_as_required("workdir")
    app.run(main)
