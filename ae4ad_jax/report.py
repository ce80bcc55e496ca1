"""Command line: the report of finished runs (Table 1 and its figures, or Table 2 of method
comparisons), rebuilt from their workdirs.

    python -m ae4ad_jax.report --workdir=runs/table1_brats [--workdir=...] [--out=DIR]

What is written: `reporting/build.py`.
"""

from absl import app, flags

from ae4ad_jax.core.errors import exit_on_user_error
from ae4ad_jax.reporting.build import write_report


def main(argv):
    del argv
    print(exit_on_user_error(write_report, flags.FLAGS.workdir, flags.FLAGS.out))


if __name__ == "__main__":
    flags.DEFINE_multi_string("workdir", None, "Workdir(s) of finished runs.")
    flags.DEFINE_string("out", None, "Output folder (default: first workdir's report/).")
    flags.mark_flag_as_required("workdir")
    app.run(main)
