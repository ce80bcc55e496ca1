"""The report page people open: `report/report.md` with its tables and figures.

Figures from the final scores of each workdir (`scores.npz`):
- `score_histograms.png`: test scores of normal and abnormal images, with the
  decision threshold set on normal images;
- `roc_pr.png`: ROC and precision-recall curves of the test images;
one member per (latent size, weights) group, its first seed, at most
`MAX_SHOWN` groups. The page links these, the curves against d written by
`build.py`, and the workdir's `examples.png`; `report_images` gives the same PNGs
to TensorBoard.
"""

import os
import shutil

import numpy as np

from ae4ad_jax.core import files
from ae4ad_jax.reporting import figures
from ae4ad_jax.runs import results

MAX_SHOWN = 8
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
        saved = results.read_scores(workdir)
        if saved is None or "test" not in saved:
            continue
        test, labels = saved["test"], saved["test_labels"]
        rows = results.read_summary(workdir)["metrics"]
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


def write_score_figures(workdirs, out_dir) -> None:
    shown = shown_members(workdirs)
    if shown:
        figures.plot_score_histograms(shown, os.path.join(out_dir, "score_histograms.png"))
        figures.plot_roc_pr(shown, os.path.join(out_dir, "roc_pr.png"))
    examples = os.path.join(workdirs[0], figures.EXAMPLES_FILE)
    target = os.path.join(out_dir, figures.EXAMPLES_FILE)
    if os.path.exists(examples) and os.path.abspath(examples) != os.path.abspath(target):
        shutil.copyfile(examples, target)


def _run_line(workdir, summary) -> str:
    config, manifest = summary["config"], summary["manifest"]
    source, devices = manifest["source"], manifest["devices"]
    commit = (source["commit"] or "unknown")[:12] + (" (with changes)" if source["dirty"]
                                                      else "")
    return (f"- `{workdir}`: method {config['method']} on {config['dataset']}, "
            f"{len(summary['metrics'])} member(s), {config['num_epochs']} epochs, "
            f"{summary['wall_time_s'] / 60:.1f} min on {devices['count']} x {devices['kind']}; "
            f"commit {commit}.")


def _threshold_lines(rows) -> list[str]:
    return ["| member | d | seed | threshold | FPR, test normal | TPR, test abnormal |",
            "|---|---|---|---|---|---|"] + [
        f"| {row['member']} | {row['latent_size']} | {row['seed']} | {row['threshold']:.5g} | "
        f"{100 * row['fpr_test_normal']:.1f}% | {100 * row['tpr_test_abnormal']:.1f}% |"
        for row in rows]


def write_page(workdirs, out_dir, table_markdown) -> str:
    """report.md: the runs, the table, the thresholds, and every figure present."""
    summaries = {workdir: results.read_summary(workdir) for workdir in workdirs}
    rows = [row for summary in summaries.values() for row in summary["metrics"]]
    rate = summaries[workdirs[0]]["config"]["eval"]["false_positive_rate"]
    lines = ["# Report", "", *(_run_line(w, s) for w, s in summaries.items()), "",
             "## Metrics", "", table_markdown]
    if all("fpr_test_normal" in row for row in rows):  # runs with a test split
        lines += ["", "## Decision thresholds", "",
                  f"Set on normal images only, at a {100 * rate:g}% false-positive rate; "
                  "the test columns show how they hold on the test images.", "",
                  *_threshold_lines(rows)]
    lines += ["", "## Figures", ""]
    for name, title in FIGURE_TITLES:
        if os.path.exists(os.path.join(out_dir, name)):
            lines += [f"{title}", "", f"![{name}]({name})", ""]
    page = "\n".join(lines) + "\n"
    files.write_text(os.path.join(out_dir, "report.md"), page)
    return page


def report_images(out_dir) -> dict:
    """{"report/<name>": uint8 [H, W, 3]} of every figure of the report, for TensorBoard."""
    from PIL import Image

    images = {}
    for name, _ in FIGURE_TITLES:
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            with Image.open(path) as image:
                images[f"report/{name.removesuffix('.png')}"] = np.asarray(
                    image.convert("RGB"))
    return images
