"""The report page people open: `report/report.md` with its tables and figures.

Figures from the final scores of each workdir (`scores.npz`):
- `score_histograms.png`: test scores of normal and abnormal images, with the
  decision threshold set on normal images;
- `roc_pr.png`: ROC and precision-recall curves of the test images;
one member per (latent size, weights) group, its first seed, at most
`MAX_SHOWN` groups. The page links these, the curves against d written by
`report.py`, and the workdir's `examples.png`; `tensorboard_images` puts the
same PNGs into TensorBoard.
"""

import json
import os

import numpy as np
from sklearn import metrics as sk_metrics

from ae4ad_jax import run_outputs

MAX_SHOWN = 8
HISTOGRAM_BINS = 40
FIGURE_TITLES = (
    ("score_histograms.png", "Test scores of normal and abnormal images; the dashed line is "
                             "the decision threshold set on normal images only."),
    ("roc_pr.png", "ROC and precision-recall curves of the test images."),
    ("examples.png", "Test images, reconstructions, anomaly maps and masks (member 0)."),
    ("auroc_vs_d.png", "Image AUROC and AP against the latent size d (seeds as error bars)."),
    ("error_vs_d.png", "Reconstruction error against d (the paper's figure)."),
    ("entropy_vs_d.png", "Latent entropy H(Z) against d."),
    ("auroc_vs_entropy.png", "AUROC against the latent entropy of train-normal codes."),
    ("rate_vs_distortion.png", "Rate-distortion curve of normal images over lambda_R."),
    ("auroc_vs_rate.png", "AUROC against the rate of normal images."),
)


AGAINST_D = ("auroc_vs_d.png", "error_vs_d.png", "entropy_vs_d.png", "auroc_vs_entropy.png")


def _label(member) -> str:
    parts = [f"d = {member['latent_size']}"]
    for key, name in (("entropy_weight", "lambda_H"), ("rate_weight", "lambda_R")):
        if key in member:
            parts.append(f"{name} = {member[key]:g}")
    return ", ".join(parts)


def shown_members(workdirs) -> list[dict]:
    """{label, scores, labels, threshold} of one member per group (first seed), for
    workdirs that have test scores; groups in order of d."""
    groups = {}
    for workdir in workdirs:
        path = os.path.join(workdir, run_outputs.SCORES_FILE)
        if not os.path.exists(path):
            continue
        rows = _read_summary(workdir)["metrics"]
        with np.load(path) as saved:
            if "test" not in saved:
                continue
            test, labels = saved["test"], saved["test_labels"]
        for row in sorted(rows, key=lambda r: r["seed"]):
            label = _label(row)
            if label not in groups:
                groups[label] = {"label": label, "d": row["latent_size"],
                                 "scores": test[row["member"]], "labels": labels,
                                 "threshold": row.get("threshold")}
    shown = sorted(groups.values(), key=lambda g: (g["d"], g["label"]))
    if len(shown) > MAX_SHOWN:
        keep = np.unique(np.linspace(0, len(shown) - 1, MAX_SHOWN).round().astype(int))
        shown = [shown[i] for i in keep]
    return shown


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_score_histograms(shown, path) -> None:
    plt = _pyplot()
    columns = min(len(shown), 4)
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows),
                             squeeze=False)
    for ax, entry in zip(axes.ravel(), shown, strict=False):
        scores, labels = entry["scores"], entry["labels"]
        bins = np.linspace(scores.min(), scores.max(), HISTOGRAM_BINS + 1)
        ax.hist(scores[labels == 0], bins, alpha=0.6, density=True, label="normal")
        ax.hist(scores[labels == 1], bins, alpha=0.6, density=True, label="abnormal")
        if entry["threshold"] is not None:
            ax.axvline(entry["threshold"], color="k", linestyle="--", linewidth=1,
                       label="threshold")
        ax.set_title(entry["label"], fontsize=8)
        ax.set_xlabel("anomaly score", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc_pr(shown, path) -> None:
    plt = _pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(8, 3.6))
    for entry in shown:
        scores, labels = entry["scores"], entry["labels"]
        fpr, tpr, _ = sk_metrics.roc_curve(labels, scores)
        precision, recall, _ = sk_metrics.precision_recall_curve(labels, scores)
        auroc = sk_metrics.roc_auc_score(labels, scores)
        ap = sk_metrics.average_precision_score(labels, scores)
        roc.plot(fpr, tpr, linewidth=1.2, label=f"{entry['label']} ({100 * auroc:.1f})")
        pr.step(recall, precision, where="post", linewidth=1.2,
                label=f"{entry['label']} ({100 * ap:.1f})")
    roc.plot([0, 1], [0, 1], color="gray", linewidth=0.8, linestyle=":")
    pr.axhline(np.mean(shown[0]["labels"]), color="gray", linewidth=0.8, linestyle=":")
    for ax, (x, y, title) in ((roc, ("false-positive rate", "true-positive rate", "ROC (AUROC %)")),
                              (pr, ("recall", "precision", "precision-recall (AP %)"))):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_score_figures(workdirs, out_dir) -> None:
    shown = shown_members(workdirs)
    if shown:
        plot_score_histograms(shown, os.path.join(out_dir, "score_histograms.png"))
        plot_roc_pr(shown, os.path.join(out_dir, "roc_pr.png"))
    examples = os.path.join(workdirs[0], run_outputs.EXAMPLES_FILE)
    target = os.path.join(out_dir, run_outputs.EXAMPLES_FILE)
    if os.path.exists(examples) and os.path.abspath(examples) != os.path.abspath(target):
        with open(examples, "rb") as source, open(target, "wb") as copy:
            copy.write(source.read())


def _read_summary(workdir) -> dict:
    with open(os.path.join(workdir, run_outputs.SUMMARY_FILE)) as f:
        return json.load(f)


def _run_line(workdir, summary) -> str:
    # summaries of older versions lack some of these
    config, manifest = summary.get("config", {}), summary.get("manifest", {})
    source, devices = manifest.get("source", {}), manifest.get("devices", {})
    commit = (source.get("commit") or "unknown")[:12] + (
        " (with changes)" if source.get("dirty") else "")
    minutes = (f"{summary['wall_time_s'] / 60:.1f} min" if "wall_time_s" in summary
               else "? min")
    return (f"- `{workdir}`: method {config.get('method', '?')} on "
            f"{config.get('dataset', '?')}, {len(summary['metrics'])} member(s), "
            f"{config.get('num_epochs', '?')} epochs, {minutes} on "
            f"{devices.get('count', '?')} x {devices.get('kind', '?')}; commit {commit}.")


def _threshold_lines(rows) -> list[str]:
    """The thresholds table; none when a row lacks the test columns (older runs)."""
    if not all("fpr_test_normal" in row for row in rows):
        return []
    return ["| member | d | seed | threshold | FPR, test normal | TPR, test abnormal |",
            "|---|---|---|---|---|---|"] + [
        f"| {row['member']} | {row['latent_size']} | {row['seed']} | {row['threshold']:.5g} | "
        f"{100 * row['fpr_test_normal']:.1f}% | {100 * row['tpr_test_abnormal']:.1f}% |"
        for row in rows]


def write_page(workdirs, out_dir, table_markdown) -> str:
    """report.md: the runs, the table, the thresholds, and every figure present."""
    summaries = {workdir: _read_summary(workdir) for workdir in workdirs}
    rows = [row for summary in summaries.values() for row in summary["metrics"]]
    rate = summaries[workdirs[0]].get("config", {}).get("eval", {}).get(
        "false_positive_rate")
    lines = ["# Report", "", *(_run_line(w, s) for w, s in summaries.items()), "",
             "## Metrics", "", table_markdown]
    thresholds = _threshold_lines(rows)
    if thresholds and rate is not None:
        lines += ["", "## Decision thresholds", "",
                  f"Set on normal images only, at a {100 * rate:g}% false-positive rate; "
                  "the test columns show how they hold on the test images.", "", *thresholds]
    lines += ["", "## Figures", ""]
    one_size = len({row["latent_size"] for row in rows}) < 2
    for name, title in FIGURE_TITLES:
        if name in AGAINST_D and one_size:
            continue  # one latent size: no curve against d
        if os.path.exists(os.path.join(out_dir, name)):
            lines += [f"{title}", "", f"![{name}]({name})", ""]
    page = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(page)
    return page


def tensorboard_images(tensorboard, out_dir, step) -> list[str]:
    """Adds every figure of the report to TensorBoard as an image ("report/<name>")."""
    from PIL import Image

    added = []
    for name, _ in FIGURE_TITLES:
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
            tensorboard.add_image(f"report/{name.removesuffix('.png')}", array, step,
                                  dataformats="HWC")
            added.append(name)
    return added
