"""The claim's statistics and figure: Spearman correlations with bootstrap intervals
against scipy, and the report's claim.md and claim.png on a synthetic sweep."""

import numpy as np
import pytest
from scipy import stats

from ae4ad_jax.reporting import claim, figures, tables


def _rows(seed=0):
    """A sweep d x lambda_R x 2 seeds where AUROC falls as the normal code's rate rises."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in (1, 4, 16, 64):
        for weight in (0.0, 1e-4, 1e-3):
            for s in (0, 1):
                bits = d * 10.0 / (1 + 1e3 * weight) + rng.normal()
                rows.append({"latent_size": d, "rate_weight": weight, "seed": s,
                             "auroc": float(0.9 - bits / 2000 + 0.01 * rng.normal()),
                             "rate_bits_val_normal": float(bits),
                             "entropy_norm_gaussian_train_normal": float(np.log(d) + s),
                             "recon_error_val_normal": float(0.1 / d + weight),
                             "recon_error_train_normal": float(0.1 / d + weight)})
    return rows


def test_spearman_and_its_interval_match_scipy_and_contain_the_estimate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    rho, low, high = claim.spearman_with_interval(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert low < rho < high and -1 <= low and high <= 1
    assert claim.spearman_with_interval(x, 2 * x + 1)[:3] == pytest.approx((1.0, 1.0, 1.0))
    assert claim.spearman_with_interval(x, -x)[0] == pytest.approx(-1.0)


def _interval_by_hand(x, y, resamples, seed):
    """The percentile bootstrap written out (the project's own loop until scipy's
    `bootstrap` replaced it): pairs drawn with replacement, tied resamples left out."""
    rng, values = np.random.default_rng(seed), []
    for _ in range(resamples):
        pick = rng.integers(0, len(x), len(x))
        if np.ptp(x[pick]) > 0 and np.ptp(y[pick]) > 0:
            values.append(stats.spearmanr(x[pick], y[pick]).statistic)
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_the_interval_equals_the_bootstrap_written_out_with_tied_resamples_left_out():
    x = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2])  # 6 members: some resamples are all tied
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 1.5])
    y[1] += 3.0
    _, low, high = claim.spearman_with_interval(x, y, resamples=2000, seed=3)
    assert (low, high) == pytest.approx(_interval_by_hand(x, y, 2000, 3), abs=1e-12)
    assert low < high


def test_the_claim_page_states_correlations_and_choices_and_draws_the_figure(tmp_path):
    rows = _rows()
    table = tables.aggregate(rows)
    markdown = claim.write_claim(rows, table, str(tmp_path))
    rho = stats.spearmanr([r["rate_bits_val_normal"] for r in rows],
                          [r["auroc"] for r in rows]).statistic
    assert rho < -0.9
    assert f"| rate of normal codes (bits) | {rho:+.2f} |" in markdown
    assert "over the 24 members" in markdown
    assert "- d from recon_error_val_normal (no labels): d = 64" in markdown
    assert markdown.count("- lambda_R at d = ") == 4
    assert (tmp_path / "claim.md").read_text() == markdown
    figures.plot_claim(table, claim.measures(rows), str(tmp_path / "claim.png"))
    assert (tmp_path / "claim.png").stat().st_size > 10_000
    assert claim.write_claim(rows[:2], table, str(tmp_path / "none")) == ""  # too few
