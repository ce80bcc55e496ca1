"""A report from one or many finished workdirs: tables, figures and the page.

Single-method runs get Table 1 (`tables.py`: grouped by latent size d and the
weight axes), its figures (error, AUROC and entropy against d; the rate curves
where lambda_R was swept), the score figures and `report.md` (`page.py`), in
`OUT` (default: the first workdir's `report/`). Method comparisons (configs with
`methods`) get their Table 2, one per workdir (dataset), gathered in
`OUT/methods.md`.
"""

import os

from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.logs import log
from ae4ad_jax.estimators.entropy import ESTIMATORS
from ae4ad_jax.reporting import claim, figures, page, tables
from ae4ad_jax.runs import workdir as workdir_lib

REPORT_DIR = "report"


def write_comparison_table(workdir) -> str:
    """table2.md and table2.csv of a finished method comparison; returns the markdown."""
    config = workdir_lib.load_saved_config(workdir)
    if not config.methods:
        raise UserError(f"Workdir {workdir} is not a method comparison (its config sets no "
                        "`methods`).")
    rows, note = tables.table2_rows({name: os.path.join(workdir, name)
                                     for name in config.methods},
                                    config.latent_size, config.table1_workdir)
    markdown = tables.write_table2(workdir, config.dataset, config.latent_size, rows, note)
    log(f"{os.path.join(workdir, tables.TABLE2_FILE)}:\n{markdown}")
    return markdown


def write_comparison_report(workdirs, out_dir=None) -> str:
    """One method table per comparison workdir (dataset), all in OUT/methods.md."""
    markdown = "\n".join(write_comparison_table(workdir) for workdir in workdirs)
    out_dir = out_dir or workdirs[0]
    os.makedirs(out_dir, exist_ok=True)
    files.write_text(os.path.join(out_dir, "methods.md"), markdown)
    return markdown


def _write_figures(table, out_dir) -> None:
    """The curves against d (with two latent sizes or more: a figure of one point is not
    written, and one left by an earlier report is removed) and against the rate weight."""
    if len({e["latent_size"] for e in table}) > 1:
        _write_against_d(table, out_dir)
    else:
        for name in page.AGAINST_D:
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
    if any("rate_weight" in e for e in table):
        error_key = tables.held_out(table, "recon_error")
        figures.plot_against_rate(table, lambda e: e[error_key],
                                  f"normal MSE ({error_key.removeprefix('recon_error_')})",
                                  os.path.join(out_dir, "rate_vs_distortion.png"))
        figures.plot_against_rate(table, lambda e: tuple(100 * v for v in e["auroc"]),
                                  "image AUROC (%)", os.path.join(out_dir, "auroc_vs_rate.png"))


def _write_against_d(table, out_dir) -> None:
    figures.plot_against_d(table, tables.ERROR_COLUMNS, "reconstruction error (MSE)",
                           os.path.join(out_dir, "error_vs_d.png"))
    figures.plot_against_d(table, (("auroc", "image AUROC"), ("ap", "image AP")), "metric",
                           os.path.join(out_dir, "auroc_vs_d.png"))
    entropy_series = [(f"entropy_{m}_{split}", f"{m}, {split.replace('_', ' ')}")
                      for m in ESTIMATORS
                      for split in ("train_normal", "test_normal", "test_abnormal")]
    if any(key in table[0] for key, _ in entropy_series):
        figures.plot_against_d(table, entropy_series, "latent entropy H(Z) (nats)",
                               os.path.join(out_dir, "entropy_vs_d.png"))
        figures.plot_auroc_vs_entropy(table, os.path.join(out_dir, "auroc_vs_entropy.png"))


def write_report(workdirs, out_dir=None) -> str:
    """Writes the tables, figures and page; returns the markdown tables. Method comparisons
    (workdirs of configs with `methods`) get their method tables instead."""
    kinds = {workdir_lib.is_comparison(w) for w in workdirs}
    if kinds == {True}:
        return write_comparison_report(workdirs, out_dir)
    if len(kinds) > 1:
        raise UserError("Give either method-comparison workdirs or single-method workdirs, "
                        "not both.")
    table = tables.aggregate(tables.read_rows(workdirs))  # every summary read first
    out_dir = out_dir or os.path.join(workdirs[0], REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    markdown = tables.write_table1(table, out_dir)
    _write_figures(table, out_dir)
    rows = tables.read_rows(workdirs)
    claim_markdown = claim.write_claim(rows, table, out_dir)
    if claim_markdown:
        figures.plot_claim(table, claim.measures(rows), os.path.join(out_dir, "claim.png"))
        markdown += "\n" + claim_markdown
    if any("rate_weight" in e for e in table):
        markdown += "\n" + tables.write_rate_table(table, out_dir)
    page.write_score_figures(workdirs, out_dir)
    page.write_page(workdirs, out_dir, markdown)
    return markdown
