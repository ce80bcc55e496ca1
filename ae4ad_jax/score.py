"""Command line: score image files with a trained detector.

    python -m ae4ad_jax.score --workdir=runs/default --inputs=scans/ --out=scored/ \
        [--member=0] [--score=reconstruction] [--nifti_axis=2] [--threshold=VALUE] \
        [--overlays=false]

`--score` picks the score: the method's own ("reconstruction") or a score of the code
(`code_density`, `code_knn`, `rate`, `combined_<one of them>`: evaluation/code_scores.py),
each with its own threshold from the run's normal images.

`--inputs` is a file or a folder (searched recursively), or several of them
(comma-separated or the flag repeated); what is written: `serving/files.py`.
`--max_image_pixels`, `--max_slices` and `--max_decoded_bytes` cap what one file may
decode to (`data/decoding.py`); a file over a cap gets a row in errors.csv.
Exit status 0 when every file was scored, 1 when some are in errors.csv, 2 on
bad arguments, 130 when stopped by SIGINT or SIGTERM (summary.json then says
"interrupted").
"""

import dataclasses
import signal
import sys

from absl import app, flags

from ae4ad_jax.core import settings
from ae4ad_jax.core.errors import exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.data.decoding import Limits
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.serving.files import ERRORS_FILE, SCORES_FILE, SUMMARY_FILE, score_files

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def report(summary, out) -> int:
    """The command's closing lines; its exit status."""
    decided = "" if summary["threshold"] is None else \
        f", {summary['images_abnormal']} above the threshold {summary['threshold']:.5g}"
    decided += f" (score: {summary['score']})"
    print(f"Scored {summary['images_scored']} image(s) from {summary['files']} file(s)"
          f"{decided}; results in {out}/{SCORES_FILE}.")
    problems = summary["files_unreadable"] + summary["maps_unwritten"]
    if problems:
        print(f"{summary['files_unreadable']} file(s) could not be read, "
              f"{summary['maps_unwritten']} map(s) could not be written: see "
              f"{out}/{ERRORS_FILE}.", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum, frame):
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    f = flags.FLAGS
    inputs = [part for value in f.inputs for part in value.split(",") if part]
    limits = {field.name: f[field.name].value for field in dataclasses.fields(Limits)}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = exit_on_user_error(score_files, f.workdir, inputs, f.out, f.member,
                                     f.nifti_axis, f.nifti_rotations, f.threshold,
                                     f.overlays, score=f.score,
                                     limits=settings.from_config(Limits, limits))
    except KeyboardInterrupt as stop:
        print(f"Stopped by {stop or 'SIGINT'} before scoring finished: {f.out}/"
              f"{SUMMARY_FILE} says how far it got (rows so far in {SCORES_FILE}.partial).",
              file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    sys.exit(report(summary, f.out))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of a finished run (or a saved detector).")
    flags.DEFINE_multi_string("inputs", None, "Files or folders to score (comma-separated "
                              "or repeated).")
    flags.DEFINE_string("out", None, "Folder for scores.csv, maps/, errors.csv, summary.json.")
    flags.DEFINE_integer("member", 0, "Which member of an ensemble run scores.")
    flags.DEFINE_string("score", "reconstruction", "The score: reconstruction, code_density, "
                        "code_knn, rate, or combined_<code score>.")
    flags.DEFINE_integer("nifti_axis", 2, "Axis of NIfTI volumes along which slices are taken.")
    flags.DEFINE_integer("nifti_rotations", 1, "Quarter turns applied to each NIfTI slice "
                         "(1: an axial RAS slice with anterior up).")
    flags.DEFINE_float("threshold", None, "Decision threshold to use instead of the run's.")
    flags.DEFINE_bool("overlays", True, "Write an overlay PNG for every scored image.")
    for field in dataclasses.fields(Limits):
        flags.DEFINE_integer(field.name, field.default, f"Cap: {field.metadata['help']}.",
                             lower_bound=field.metadata["low"])
    flags.mark_flags_as_required(["workdir", "inputs", "out"])
    app.run(main)
