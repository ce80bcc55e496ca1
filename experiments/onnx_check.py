"""Every method's ONNX export checked in ONNX Runtime, and its speed beside JAX's.

    python -m ae4ad_jax.main --config=configs/test.py --workdir=runs/methods \
        "--config.methods=('ae','ae-l1',...)" --config.num_epochs=1
    python -m experiments.onnx_check --workdir=runs/methods [--speed_workdir=runs/default]

For each run in `--workdir` (a run, or a comparison's folder of runs): exports member 0
to ONNX (or records why it is refused), scores the run's first `--images` test images
in ONNX Runtime (CPU provider) and prints the largest differences from the run's own
test scores (scores.npz) and from the JAX detector's maps. With `--speed_workdir`:
images/s of ONNX Runtime and of JAX (the detector, jitted) on the CPU, on the same
test images in the same batches, medians over `--rounds`, and the ONNX file's size.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime
from absl import app, flags

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.data import pipeline
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.runs import results
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.serving import detector as detector_lib
from ae4ad_jax.serving import onnx_export
from ae4ad_jax.training import export

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A finished run, or a comparison's folder of runs.")
flags.DEFINE_string("speed_workdir", "", "A finished run to time ONNX Runtime against JAX.")
flags.DEFINE_integer("images", 64, "Test images compared per run.")
flags.DEFINE_integer("rounds", 5, "Timed rounds of the speed measurement.")
flags.mark_flag_as_required("workdir")


def _runs(folder):
    if not os.path.isdir(folder):
        raise SystemExit(f"{folder} is not a folder: give a finished run or a comparison.")
    if os.path.exists(os.path.join(folder, workdir_lib.CONFIG_FILE)) and os.path.isdir(
            os.path.join(folder, "checkpoints")):
        return [folder]
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, name, "checkpoints")))


def _test_images(detector, count):
    return pipeline.load(detector.config).test_images[:count]


def check(run, out_dir, count):
    """One markdown row: the method, exported or why not, the largest differences."""
    path = os.path.join(out_dir, os.path.basename(run) + ".onnx")
    try:
        info = export.export(run, 0, path, "onnx")
    except UserError as error:
        method = workdir_lib.load_saved_config(run).method
        return f"| {method} | refused: {str(error).split('to ONNX: ', 1)[-1]} | | | |"
    detector = detector_lib.load(run)
    images = _test_images(detector, count)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {"images": images}
    if info["noise"]:  # the VAE: the noise the run's evaluation drew for these rows
        feed["noise"] = onnx_export.evaluation_noise(detector, np.arange(len(images)))
    out = dict(zip(info["outputs"], session.run(info["outputs"], feed), strict=True))
    evaluated = results.read_scores(run)["test"][0][:len(images)]
    row = (f"| {detector.config.method} | exported ({os.path.getsize(path) / 1e6:.1f} MB) | "
           f"{np.abs(out['score'] - evaluated).max():.1e} of {np.abs(evaluated).max():.2f} | ")
    if "map" not in out:
        return row + "no map | |"
    jax_maps = detector.score(images)["map"]
    return row + f"{np.abs(out['map'] - jax_maps).max():.1e} | {np.abs(jax_maps).max():.2f} |"


def speed(run, out_dir, rounds):
    detector = detector_lib.load(run)
    path = os.path.join(out_dir, "speed.onnx")
    export.export(run, 0, path, "onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    images = pipeline.load(detector.config).test_images
    batch = detector.config.eval.batch_size

    def onnx_run():
        for start in range(0, len(images), batch):
            session.run(None, {"images": images[start:start + batch]})

    def jax_run():
        detector.score(images)

    rates = {"onnxruntime": [], "jax": []}
    for run_once in (onnx_run, jax_run):
        run_once()  # compiles / warms up
    for _ in range(rounds):
        for name, run_once in (("onnxruntime", onnx_run), ("jax", jax_run)):
            start = time.perf_counter()
            run_once()
            rates[name].append(len(images) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}, len(
        images), batch, os.path.getsize(path)


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    with tempfile.TemporaryDirectory() as out_dir:
        print("| method | ONNX | max abs score diff of max score | max abs map diff | "
              "max abs map |")
        print("|---|---|---|---|---|")
        for run in _runs(FLAGS.workdir):
            print(check(run, out_dir, FLAGS.images), flush=True)
        if FLAGS.speed_workdir:
            rates, count, batch, size = speed(FLAGS.speed_workdir, out_dir, FLAGS.rounds)
            print(f"\nscoring {count} test images in batches of {batch} on {os.cpu_count()} "
                  f"CPU cores: ONNX Runtime {rates['onnxruntime']:.0f} images/s, JAX "
                  f"{rates['jax']:.0f} images/s; the ONNX file {size / 1e6:.2f} MB")


if __name__ == "__main__":
    app.run(main)
