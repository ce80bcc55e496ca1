"""The report's aggregation over weight axes and its label-free choice of lambda_R."""

import numpy as np

from ae4ad_jax import report

# (lambda_R, bits, MSE) of held-out normal images: a rate-distortion curve whose knee is
# at 100 bits (the point farthest below the chord once both axes are scaled to [0, 1]).
CURVE = [(0.0, 200.0, 0.0760), (1e-5, 195.0, 0.0762), (1e-4, 150.0, 0.0780),
         (3e-4, 100.0, 0.0825), (1e-3, 60.0, 0.1200)]


def _rows():
    rows = []
    for seed in (0, 1):
        for m, (weight, bits, mse) in enumerate(CURVE):
            rows.append({"member": m, "latent_size": 64, "seed": seed, "rate_weight": weight,
                         "auroc": 0.7 + 0.01 * m + 0.001 * seed, "ap": 0.7,
                         "recon_error_train_normal": mse, "recon_error_val_normal": mse + 0.001,
                         "rate_bits_val_normal": bits + seed, "rate_bits_train_normal": bits,
                         "entropy_norm_knn_train_normal": 1.0,
                         "entropy_norm_knn_train_normal_in_range": seed})
    return rows


def test_members_group_by_rate_weight_and_flags_need_every_seed():
    table = report.aggregate(_rows())
    assert [e["rate_weight"] for e in table] == [w for w, _, _ in CURVE]
    first = table[0]
    assert first["seeds"] == [0, 1]
    np.testing.assert_allclose(first["rate_bits_val_normal"], (200.5, 0.5))
    assert first["entropy_norm_knn_train_normal_in_range"] == 0  # seed 0 was outside


def test_label_free_lambda_is_the_knee_of_held_out_rate_distortion():
    table = report.aggregate(_rows())
    chosen, keys = report.select_rate_weight(table)
    assert chosen["rate_weight"] == 3e-4
    assert keys == ("rate_bits_val_normal", "recon_error_val_normal")


def test_rate_report_files(tmp_path):
    table = report.aggregate(_rows())
    markdown = report.write_rate_table(table, str(tmp_path))
    assert "| 0.0003 | 2 | 100.5 ± 0.5 | 0.0835 ± 0.0000 |" in markdown
    assert "Label-free choice: lambda_R = 0.0003" in markdown
    assert "Oracle: lambda_R = 0.001 (AUROC 74.0" in markdown
    for name in ("rate.md", "rate_vs_distortion.png", "auroc_vs_rate.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "lambda_R" in report.write_table(table, str(tmp_path)).splitlines()[0]
    assert "†" in report.write_table(table, str(tmp_path))
