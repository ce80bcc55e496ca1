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
`entropy_vs_d.png` and `auroc_vs_entropy.png`.
"""

import csv
import json
import os

import numpy as np
from absl import app, flags

from ae4ad_jax.entropy import ESTIMATORS
from ae4ad_jax.errors import UserError, exit_on_user_error

TABLE_COLUMNS = (("auroc", "AUROC", 100), ("ap", "AP", 100), ("pixel_ap", "AP_pix", 100),
                 ("dice_best", "best Dice*", 100)) + tuple(
    (f"entropy_{m}_train_normal", f"H_{m}(Z) nats", 1) for m in ESTIMATORS)
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
    """One dict per (latent size, entropy weight): seeds, mean and std of every metric."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["latent_size"], row.get("entropy_weight")), []).append(row)
    table = []
    for (d, weight) in sorted(groups, key=lambda k: (k[0], k[1] or 0.0)):
        group = groups[(d, weight)]
        entry = {"latent_size": d, "seeds": sorted(r["seed"] for r in group)}
        if weight is not None:
            entry["entropy_weight"] = weight
        for key in group[0]:
            values = [r[key] for r in group if isinstance(r.get(key), float)]
            if len(values) == len(group) and key not in ("latent_size", "seed", "member",
                                                         "entropy_weight"):
                entry[key] = (float(np.mean(values)), float(np.std(values)))
        table.append(entry)
    return table


def select_latent_size(table, tolerance=SELECTION_TOLERANCE):
    """A choice of d that uses normal images only: the smallest d whose reconstruction
    error of held-out normal images (of training normals when no split is held out) is
    within `tolerance` of the lowest. Returns (d, the key it used)."""
    key = ("recon_error_val_normal" if all("recon_error_val_normal" in e for e in table)
           else "recon_error_train_normal")
    plain = [e for e in table if not e.get("entropy_weight")]
    best = min(e[key][0] for e in plain)
    chosen = min(e["latent_size"] for e in plain if e[key][0] <= (1 + tolerance) * best)
    return chosen, key


def _cell(entry, key, scale):
    if key not in entry:
        return "-"
    mean, std = entry[key]
    return f"{scale * mean:.1f} ± {scale * std:.1f}"


def write_table(table, out_dir):
    columns = [c for c in TABLE_COLUMNS if any(c[0] in e for e in table)]
    weighted = any("entropy_weight" in e for e in table)
    head = "| d | lambda | seeds | " if weighted else "| d | seeds | "
    lines = [head + " | ".join(name for _, name, _ in columns) + " |",
             "|---" * (len(columns) + 2 + weighted) + "|"]
    for entry in reversed(table):  # largest d first, as the paper
        weight = f"{entry.get('entropy_weight', 0.0):g} | " if weighted else ""
        lines.append(f"| {entry['latent_size']} | {weight}{len(entry['seeds'])} | "
                     + " | ".join(_cell(entry, k, scale) for k, _, scale in columns) + " |")
    best = max(table, key=lambda e: e["auroc"][0])
    chosen, key = select_latent_size(table)
    chosen_auroc = next(e["auroc"][0] for e in table
                        if e["latent_size"] == chosen and not e.get("entropy_weight"))
    lines += ["", "Mean ± std over seeds; metrics in percent, H(Z) of train-normal codes in "
              "nats.",
              f"Oracle: best AUROC at d = {best['latent_size']}"
              + (f", lambda = {best['entropy_weight']:g}" if weighted else "")
              + f" ({100 * best['auroc'][0]:.1f}; chosen with test labels).",
              f"Label-free choice: d = {chosen} ({100 * chosen_auroc:.1f}), the smallest d "
              f"whose {key} is within {100 * SELECTION_TOLERANCE:.0f}% of the lowest.",
              "*Best Dice is an oracle figure: its threshold is chosen with the test masks."]
    with open(os.path.join(out_dir, "table1.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    keys = sorted({k for e in table for k in e if k not in ("latent_size", "seeds")})
    with open(os.path.join(out_dir, "table1.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["latent_size", "num_seeds"]
                        + [f"{k}_{s}" for k in keys for s in ("mean", "std")])
        for e in table:
            writer.writerow([e["latent_size"], len(e["seeds"])]
                            + [e[k][i] if k in e else "" for k in keys for i in (0, 1)])
    return "\n".join(lines)


def _plot(table, series, ylabel, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [e for e in table if not e.get("entropy_weight")]
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
