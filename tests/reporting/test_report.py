"""The report's aggregation over weight axes and its label-free choice of lambda_R."""

import json
import os

import numpy as np
from sklearn.metrics import roc_auc_score

from ae4ad_jax.reporting import build, page, tables
from ae4ad_jax.runs import results

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
    table = tables.aggregate(_rows())
    assert [e["rate_weight"] for e in table] == [w for w, _, _ in CURVE]
    first = table[0]
    assert first["seeds"] == [0, 1]
    np.testing.assert_allclose(first["rate_bits_val_normal"], (200.5, 0.5))
    assert first["entropy_norm_knn_train_normal_in_range"] == 0  # seed 0 was outside


def test_label_free_lambda_is_the_knee_of_held_out_rate_distortion():
    table = tables.aggregate(_rows())
    chosen, keys = tables.select_rate_weight(table)
    assert chosen["rate_weight"] == 3e-4
    assert keys == ("rate_bits_val_normal", "recon_error_val_normal")


def test_rate_report_files(tmp_path):
    table = tables.aggregate(_rows())
    markdown = tables.write_rate_table(table, str(tmp_path))
    assert "| 0.0003 | 2 | 100.5 ± 0.5 | 0.0835 ± 0.0000 |" in markdown
    assert "Label-free choice: lambda_R = 0.0003" in markdown
    assert "Oracle: lambda_R = 0.001 (AUROC 74.0" in markdown
    assert (tmp_path / "rate.md").read_text() == markdown
    assert "lambda_R" in tables.write_table1(table, str(tmp_path)).splitlines()[0]
    assert "†" in tables.write_table1(table, str(tmp_path))


def _write_summary(workdir, rows):
    os.makedirs(workdir)
    config = {"method": "ae", "dataset": "phantom", "num_epochs": 3,
              "eval": {"false_positive_rate": 0.05}}
    json.dump({"metrics": rows, "config": config, "wall_time_s": 90.0,
               "manifest": {"source": {"commit": "ab" * 20, "dirty": False},
                            "devices": {"count": 1, "kind": "cpu"}}},
              open(os.path.join(workdir, "summary.json"), "w"))


def test_a_rate_sweep_report_has_the_rate_table_and_curves(tmp_path):
    _write_summary(str(tmp_path / "sweep"), _rows())
    markdown = build.write_report([str(tmp_path / "sweep")])
    out = tmp_path / "sweep" / "report"
    assert markdown.endswith((out / "rate.md").read_text())
    for name in ("rate_vs_distortion.png", "auroc_vs_rate.png", "table1.md"):
        assert (out / name).stat().st_size > 0
        assert name.endswith(".md") or f"![{name}]({name})" in (out / "report.md").read_text()


def _write_run(workdir, latent_sizes, seeds, rng):
    """summary.json and scores.npz of a finished run: abnormal scores shifted by d / 10."""
    labels = np.repeat([0, 1], 50)
    rows, test = [], []
    for d in latent_sizes:
        for seed in seeds:
            scores = rng.normal(size=100) + labels * d / 10
            rows.append({"member": len(rows), "latent_size": d, "seed": seed,
                         "auroc": float(roc_auc_score(labels, scores)), "ap": 0.5,
                         "recon_error_train_normal": 0.1, "threshold": 1.0 + seed,
                         "fpr_test_normal": 0.06, "tpr_test_abnormal": 0.5})
            test.append(scores)
    _write_summary(workdir, rows)
    np.savez(os.path.join(workdir, "scores.npz"), test=np.array(test), test_labels=labels,
             normal=np.zeros((len(rows), 10)))
    return test


def test_report_page_shows_tables_thresholds_and_score_figures(tmp_path):
    rng = np.random.default_rng(0)
    test = _write_run(str(tmp_path / "a"), (4, 16), (1, 0), rng)
    _write_run(str(tmp_path / "b"), (64,), (0,), rng)
    shown = page.shown_members([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [s["label"] for s in shown] == ["d = 4", "d = 16", "d = 64"]
    np.testing.assert_array_equal(shown[1]["scores"], test[3])  # d = 16's seed 0
    assert shown[1]["threshold"] == 1.0
    build.write_report([str(tmp_path / "a"), str(tmp_path / "b")])
    out = tmp_path / "a" / "report"
    text = (out / "report.md").read_text()
    assert "method ae on phantom, 4 member(s), 3 epochs, 1.5 min on 1 x cpu; commit abab" in text
    assert "| 3 | 16 | 0 | 1 | 6.0% | 50.0% |" in text
    for name in ("score_histograms.png", "roc_pr.png", "auroc_vs_d.png"):
        assert f"![{name}]({name})" in text and (out / name).stat().st_size > 0
    assert "examples.png" not in text  # the run wrote none


def test_a_one_member_report_shows_what_one_run_measured(tmp_path):
    """One d and one seed: values without a spread, no choice among rows, no curves of
    one point (and those of an earlier report of more members are removed)."""
    run = str(tmp_path / "a")
    _write_run(run, (4, 16), (0, 1), np.random.default_rng(2))
    build.write_report([run])
    out = tmp_path / "a" / "report"
    assert (out / "auroc_vs_d.png").exists() and "Oracle" in (out / "table1.md").read_text()
    one = str(tmp_path / "one")
    _write_run(one, (16,), (0,), np.random.default_rng(2))
    build.write_report([one], out_dir=str(out))  # over the earlier report
    table = (out / "table1.md").read_text()
    assert "±" not in table and "Oracle" not in table and "Label-free" not in table
    assert table.splitlines()[2].startswith("| 16 | 1 | ") and "One seed;" in table
    assert not any((out / name).exists() for name in page.AGAINST_D)
    assert "_vs_d" not in (out / "report.md").read_text()
    header, row = (out / "table1.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["auroc_mean"] and values["auroc_std"] == ""  # no spread of one seed


def test_report_figures_become_tensorboard_images(tmp_path):
    from PIL import Image
    from tensorboardX.proto import event_pb2

    _write_run(str(tmp_path / "a"), (4, 16), (0,), np.random.default_rng(1))
    build.write_report([str(tmp_path / "a")])
    writer = results.Writer(str(tmp_path / "w"), [{"latent_size": 4, "seed": 0}], 0)
    added = page.report_images(str(tmp_path / "a" / "report"))
    writer.write_images(added, 7)
    writer.close()
    assert "report/roc_pr" in added and "report/score_histograms" in added
    images = {}
    for path in (tmp_path / "w" / "tensorboard").iterdir():
        data = path.read_bytes()
        while data:  # TFRecord: length, its CRC, the record, its CRC
            length = int.from_bytes(data[:8], "little")
            event = event_pb2.Event.FromString(data[12:12 + length])
            data = data[16 + length:]
            for value in event.summary.value:
                if value.HasField("image"):
                    images[value.tag] = (event.step, value.image)
    step, image = images["report/roc_pr"]
    expected = Image.open(tmp_path / "a" / "report" / "roc_pr.png").size
    assert step == 7 and (image.width, image.height) == expected
    assert set(images) == set(added)
