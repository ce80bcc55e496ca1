"""How fast `ae4ad_jax.score` scores a folder: PNG files and a NIfTI volume.

    python -m experiments.score_benchmark --workdir=runs/default [--num_images=2000]

Writes `num_images` 256x256 gray PNGs and one 256x256x155 NIfTI volume (the
BraTS grid) into a scratch folder, then scores the folder twice with the
workdir's member 0: with overlay PNGs (the default) and without them. A first
call on one file, timed apart, loads the checkpoint and compiles the scoring
program (a cost paid once per process). Prints the timings and rates as JSON.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import json
import os
import shutil
import time

import numpy as np
from absl import app, flags
from PIL import Image

from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.serving.files import score_files

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/default", "A finished run.")
flags.DEFINE_string("root", "/tmp/ae4ad_score_bench", "Scratch folder (deleted first).")
flags.DEFINE_integer("num_images", 2000, "PNG files to score.")
VOLUME_SHAPE = (256, 256, 155)


def write_inputs(root, num_images):
    import nibabel

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "png"))
    for i in range(num_images):
        image = rng.integers(0, 256, (256, 256), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(root, "png", f"{i:05d}.png"))
    volume = rng.normal(size=VOLUME_SHAPE).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), os.path.join(root, "volume.nii.gz"))


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    shutil.rmtree(FLAGS.root, ignore_errors=True)
    inputs = os.path.join(FLAGS.root, "inputs")
    write_inputs(inputs, FLAGS.num_images)
    images = FLAGS.num_images + VOLUME_SHAPE[2]
    results = {"files": FLAGS.num_images + 1, "images": images}
    start = time.time()
    score_files(FLAGS.workdir, [os.path.join(inputs, "png", "00000.png")],
                os.path.join(FLAGS.root, "out_first"))
    results["first_call_seconds"] = round(time.time() - start, 1)
    for overlays in (True, False):
        start = time.time()
        summary = score_files(FLAGS.workdir, [inputs],
                              os.path.join(FLAGS.root, f"out_{overlays}"),
                              write_overlays=overlays)
        seconds = time.time() - start
        assert summary["images_scored"] == images and not summary["files_unreadable"]
        name = "with_overlays" if overlays else "without_overlays"
        results[name] = {"seconds": round(seconds, 1),
                         "images_per_second": round(images / seconds, 1)}
    print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
