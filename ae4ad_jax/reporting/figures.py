"""The report's figures (matplotlib, drawn off-screen): metrics, errors and entropies
against d, the rate-distortion curves, score histograms, ROC and PR curves, and the
examples of test images with their reconstructions and anomaly maps."""

import numpy as np
from sklearn import metrics as sk_metrics

from ae4ad_jax.data.preprocessing import to_float
from ae4ad_jax.estimators.entropy import ESTIMATORS
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.parallel import ensemble
from ae4ad_jax.reporting import tables

EXAMPLES_FILE = "examples.png"
HISTOGRAM_BINS = 40


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


def plot_against_d(table, series, ylabel, path):
    plt = _pyplot()

    table = [e for e in table if tables.is_plain(e)]
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


def plot_against_rate(table, y_of, ylabel, path):
    """y against the rate of normal images, one line per d, seeds as error bars in both."""
    plt = _pyplot()

    rate_key = tables.held_out(table, "rate_bits")
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


def plot_auroc_vs_entropy(table, path):
    plt = _pyplot()

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


def _example_indices(labels, per_class):
    normal = np.flatnonzero(labels == 0)[:per_class]
    abnormal = np.flatnonzero(labels == 1)[:per_class]
    return np.concatenate([normal, abnormal])


def write_examples(path, weights, data, per_class, method):
    """`path` (examples.png) for member 0 of `weights` (`scoring.scoring_weights`, host
    arrays): rows input / reconstruction / anomaly map / mask, `per_class` normal and
    abnormal test images."""
    plt = _pyplot()
    indices = _example_indices(data.test_labels, per_class)
    scored = scoring.score_examples(ensemble.take(weights, 0), data.test_images[indices],
                                    indices, method=method)
    rows = [("input", np.asarray(to_float(data.test_images[indices]))),
            ("reconstruction", np.asarray(scored["recon"]))]
    maps = np.asarray(scored["map"]) if "map" in scored else None
    if maps is not None:
        rows.append(("anomaly map", maps))
    if data.test_masks is not None:
        rows.append(("mask", data.test_masks[indices]))
    fig, axes = plt.subplots(len(rows), len(indices), squeeze=False,
                             figsize=(1.6 * len(indices), 1.7 * len(rows)))
    for r, (name, values) in enumerate(rows):
        for c, i in enumerate(indices):
            ax = axes[r, c]
            image = values[c]
            if image.ndim == 3:  # [H, W, C] in [-1, 1]
                image = np.clip(image * 0.5 + 0.5, 0.0, 1.0)
                image = image[..., 0] if image.shape[-1] == 1 else image
                ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image, cmap="inferno" if name == "anomaly map" else "gray",
                          vmin=0.0, vmax=float(maps.max()) if name == "anomaly map" else 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title("abnormal" if data.test_labels[i] else "normal", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)




def plot_claim(table, measures, path):
    """Image AUROC against each normal-code measure (`measures`: (key, label)), one point
    per (d, lambda_R) with seeds as error bars, coloured by the normal reconstruction
    error (held-out normals when the run held some out)."""
    plt = _pyplot()

    error_key = tables.held_out(table, "recon_error")
    errors = np.array([e[error_key][0] for e in table])
    fig, axes = plt.subplots(1, len(measures), figsize=(5.5 * len(measures), 4),
                             squeeze=False)
    for ax, (key, label) in zip(axes[0], measures, strict=True):
        x = np.array([e[key] for e in table])
        y = 100 * np.array([e["auroc"] for e in table])
        ax.errorbar(x[:, 0], y[:, 0], xerr=x[:, 1], yerr=y[:, 1], fmt="none",
                    ecolor="0.6", capsize=2, zorder=1)
        points = ax.scatter(x[:, 0], y[:, 0], c=errors, cmap="viridis", zorder=2)
        for e, xi, yi in zip(table, x[:, 0], y[:, 0], strict=True):
            text = f"d={e['latent_size']}" + (f", {e['rate_weight']:g}" if "rate_weight" in e
                                              else "")
            ax.annotate(text, (xi, yi), fontsize=6, textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel(label)
        ax.set_ylabel("image AUROC (%)")
        ax.grid(alpha=0.3)
    fig.colorbar(points, ax=axes[0].tolist(),
                 label=f"normal MSE ({error_key.removeprefix('recon_error_')})")
    fig.savefig(path, dpi=120)
    plt.close(fig)
