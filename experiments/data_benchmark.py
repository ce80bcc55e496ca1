"""How long preparing and loading a real dataset takes: 10,000 PNGs in the MedAD layout.

    python -m experiments.data_benchmark --root=/tmp/ae4ad_data_bench [--num_images=10000]

Writes a synthetic RSNA-layout folder (256x256 grayscale PNGs: 8,000 train,
1,000 + 1,000 test), then times the first `input_pipeline.load` (decode,
resize to 64x64, write array_record; parallel across cores) and the second
(read the prepared files into host memory), and prints both.
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

from ae4ad_jax.data import pipeline as input_pipeline
from configs import default

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "/tmp/ae4ad_data_bench", "Scratch folder (deleted first).")
flags.DEFINE_integer("num_images", 10_000, "Images in all (80% train, 10% + 10% test).")
flags.DEFINE_integer("source_size", 256, "Side of the raw PNGs.")


def write_raw(root, num_images, size):
    rng = np.random.default_rng(0)
    num_test = num_images // 10
    listing = {"train": {"0": []}, "test": {"0": [], "1": []}}
    parts = (("train", "0", num_images - 2 * num_test), ("test", "0", num_test),
             ("test", "1", num_test))
    os.makedirs(os.path.join(root, "images"))
    for split, label, count in parts:
        for i in range(count):
            name = f"{split}{label}_{i:05d}.png"
            pixels = rng.integers(0, 256, (size // 8, size // 8), np.uint8)
            Image.fromarray(np.kron(pixels, np.ones((8, 8), np.uint8))).save(
                os.path.join(root, "images", name))
            listing[split][label].append(name)
    with open(os.path.join(root, "data.json"), "w") as f:
        json.dump(listing, f)


def main(argv):
    del argv
    shutil.rmtree(FLAGS.root, ignore_errors=True)
    start = time.time()
    write_raw(os.path.join(FLAGS.root, "raw"), FLAGS.num_images, FLAGS.source_size)
    print(f"wrote {FLAGS.num_images} PNGs in {time.time() - start:.1f} s")
    config = default.get_config()
    config.dataset, config.data_dir = "rsna", os.path.join(FLAGS.root, "raw")
    config.tfds_dir = os.path.join(FLAGS.root, "tfds")
    for name in ("prepare + load (first use)", "load (prepared)"):
        start = time.time()
        data = input_pipeline.load(config)
        seconds = time.time() - start
        total = len(data.train_images) + len(data.test_images)
        print(f"{name}: {seconds:.1f} s for {total} images ({total / seconds:.0f} images/s), "
              f"{os.cpu_count()} cores")


if __name__ == "__main__":
    app.run(main)
