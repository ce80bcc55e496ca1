"""Time to the first training step of the main job, on a first run and on a second run
that finds its programs in JAX's persistent compilation cache.

    python -m experiments.first_step_benchmark [--runs=3]

The main job (configs/default.py) with a training set of one batch (64 phantom
images), so that its first epoch is its first step: the time from starting the
command to its "epoch 1/1" line is the time to the first step (imports, data
loading, state initialisation, compiling, one step). The dataset is prepared
beforehand; each pair of runs gets a fresh, empty cache folder
(`--config.compilation_cache`): the first run compiles and fills it, the second
loads from it. A third column runs with the cache off. Medians over --runs pairs.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 3, "Pairs of runs (first, second) to take medians over.")
flags.DEFINE_bool("tiny", False, "configs/test.py's narrow AE instead of the paper's: checks "
                  "that the script runs (the tests), measures nothing worth reporting.")


def seconds_to_first_step(workdir, tfds_dir, cache) -> float:
    config = "configs/test.py" if FLAGS.tiny else "configs/default.py"
    command = [sys.executable, "-m", "ae4ad_jax.main", f"--config={config}",
               f"--workdir={workdir}", f"--config.tfds_dir={tfds_dir}",
               "--config.phantom.num_train=64", "--config.num_epochs=1",
               f"--config.compilation_cache={cache}"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               stderr=subprocess.DEVNULL)
    seconds = None
    for line in process.stdout:
        if seconds is None and line.startswith("epoch 1/1"):
            seconds = time.perf_counter() - start
    if process.wait() != 0 or seconds is None:
        raise SystemExit(f"the run failed: {' '.join(command)}")
    return seconds


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as folder:
        tfds_dir = os.path.join(folder, "tfds")
        if not FLAGS.tiny:  # the data prepared before any timed run (tiny: by the first)
            seconds_to_first_step(os.path.join(folder, "prepare"), tfds_dir, "")
        first, second, off = [], [], []
        for i in range(FLAGS.runs):
            cache = os.path.join(folder, f"cache{i}")
            first.append(seconds_to_first_step(os.path.join(folder, f"a{i}"), tfds_dir, cache))
            second.append(seconds_to_first_step(os.path.join(folder, f"b{i}"), tfds_dir, cache))
            if not FLAGS.tiny:  # tiny: the first run already ran the code without a cache
                off.append(seconds_to_first_step(os.path.join(folder, f"c{i}"), tfds_dir, ""))
            print(f"pair {i + 1}: first run {first[-1]:.1f} s, second run {second[-1]:.1f} s"
                  + (f", cache off {off[-1]:.1f} s" if off else ""), flush=True)
        print(f"median seconds to the first step: first run {statistics.median(first):.1f}, "
              f"second run {statistics.median(second):.1f}"
              + (f", cache off {statistics.median(off):.1f}" if off else "")
              + f" ({FLAGS.runs} runs each, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    app.run(main)
