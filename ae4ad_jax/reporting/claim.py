"""The paper's claim, read off a sweep (issue #27): across latent sizes d and rate
weights lambda_R, does detection follow the information in the normal code?

For the measures of the normal code, the learned rate in bits and H(Z_norm) by the
Gaussian estimator, the Spearman rank correlation between them and image AUROC over
the sweep's members, with a bootstrap interval over members (resampled with
replacement); and whether the label-free choices (d from the normal reconstruction
error, lambda_R at the knee of the normal rate-distortion curve) land on the best
AUROC. `claim.md` and `claim.png` (figures.plot_claim) in the report.
"""

import os
import warnings

import numpy as np
from scipy import stats

from ae4ad_jax.core import files
from ae4ad_jax.reporting import tables

BOOTSTRAP = 1000
SEED = 0
LEVEL = 0.95


def measures(rows) -> list[tuple[str, str]]:
    """(key, label) of the normal-code measures that every row has."""
    found = [(tables.held_out(rows, "rate_bits"), "rate of normal codes (bits)"),
             ("entropy_norm_gaussian_train_normal", "H_gaussian(Z_norm), train normal (nats)")]
    return [(key, label) for key, label in found
            if all(isinstance(row.get(key), float) for row in rows)]


def _spearman(x, y):
    """Spearman's rho; NaN when all of x or all of y are tied (no rank correlation)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return stats.spearmanr(x, y).statistic


def spearman_with_interval(x, y, resamples=BOOTSTRAP, seed=SEED):
    """(rho, low, high): Spearman's rank correlation of paired values and the percentile
    bootstrap interval (LEVEL) over pairs (`scipy.stats.bootstrap`'s resamples). Resamples
    whose values are all tied in x or y (no rank correlation) are left out."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rho = float(stats.spearmanr(x, y).statistic)
    with warnings.catch_warnings():  # its own interval is NaN when a resample is tied
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        values = stats.bootstrap((x, y), _spearman, paired=True, vectorized=False,
                                 n_resamples=resamples, method="percentile",
                                 rng=np.random.default_rng(seed)).bootstrap_distribution
    values = values[np.isfinite(values)]
    if not len(values):
        return rho, float("nan"), float("nan")
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return rho, float(low), float(high)


def _choices(table) -> list[str]:
    """Whether each label-free choice lands on the best mean AUROC."""
    lines = []
    best = max(table, key=lambda e: e["auroc"][0])
    if any(tables.is_plain(e) for e in table):
        d, key = tables.select_latent_size(table)
        chosen = next(e for e in table if e["latent_size"] == d and tables.is_plain(e))
        best_plain = max((e for e in table if tables.is_plain(e)), key=lambda e: e["auroc"][0])
        lines.append(f"- d from {key} (no labels): d = {d}, AUROC {100 * chosen['auroc'][0]:.1f}; "
                     f"the best plain AE is d = {best_plain['latent_size']} "
                     f"({100 * best_plain['auroc'][0]:.1f}): "
                     f"{'the same' if chosen is best_plain else 'not the same'}.")
    for d in sorted({e["latent_size"] for e in table if "rate_weight" in e}):
        entries = [e for e in table if e["latent_size"] == d and "rate_weight" in e]
        chosen, _ = tables.select_rate_weight(entries)
        top = max(entries, key=lambda e: e["auroc"][0])
        lines.append(f"- lambda_R at d = {d} from the normal rate-distortion knee: "
                     f"{chosen['rate_weight']:g} (AUROC {100 * chosen['auroc'][0]:.1f}); the "
                     f"best is {top['rate_weight']:g} ({100 * top['auroc'][0]:.1f}): "
                     f"{'the same' if chosen is top else 'not the same'}.")
    lines.append(f"- Best AUROC of the sweep: {100 * best['auroc'][0]:.1f} at d = "
                 f"{best['latent_size']}" + (f", lambda_R = {best['rate_weight']:g}"
                                              if "rate_weight" in best else "") + ".")
    return lines


def write_claim(rows, table, out_dir) -> str:
    """claim.md (correlations and choices) for a sweep's member rows and their aggregated
    table; returns the markdown ("" when the sweep has fewer than 3 members or no
    normal-code measure)."""
    found = measures(rows)
    if len(rows) < 3 or not found:
        return ""
    auroc = [row["auroc"] for row in rows]
    lines = ["## The claim: detection against the information in the normal code", "",
             f"Spearman rank correlation over the {len(rows)} members, with a "
             f"{LEVEL:.0%} bootstrap interval over members ({BOOTSTRAP} resamples):", "",
             "| measure | rho (AUROC) | interval |", "|---|---|---|"]
    for key, label in found:
        rho, low, high = spearman_with_interval([row[key] for row in rows], auroc)
        lines.append(f"| {label} | {rho:+.2f} | [{low:+.2f}, {high:+.2f}] |")
    lines += ["", "Label-free choices against the best AUROC (chosen with test labels):",
              *_choices(table), "", "![claim](claim.png)"]
    markdown = "\n".join(lines) + "\n"
    files.write_text(os.path.join(out_dir, "claim.md"), markdown)
    return markdown
