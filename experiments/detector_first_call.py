"""A detector's first call in a fresh process: restore member 0 of a finished run and score
10 images, counting the programs XLA compiles and what the process imported.

    python -m experiments.detector_first_call --workdir=runs/default

Prints one JSON line: programs compiled, their compile seconds, the wall seconds of the
call, and whether optax, matplotlib or the trainer were imported.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import json
import sys
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/default", "Workdir of a finished run.")


def main(argv):
    del argv
    import jax
    from jax import monitoring

    from ae4ad_jax.nets import cpu_kernels
    from ae4ad_jax.serving import detector

    cpu_kernels.apply_xla_cpu_flags()
    compiles = []
    monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: compiles.append(seconds)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    start = time.time()
    loaded = detector.load(FLAGS.workdir, 0)
    jax.block_until_ready(loaded.score(np.zeros((10,) + loaded.image_shape, np.uint8)))
    seconds = time.time() - start
    imported = {name: any(m == name or m.startswith(name + ".") for m in sys.modules)
                for name in ("optax", "matplotlib", "ae4ad_jax.training")}
    print(json.dumps({"programs_compiled": len(compiles),
                      "compile_seconds": round(sum(compiles), 2),
                      "first_call_seconds": round(seconds, 2), "imported": imported}))


if __name__ == "__main__":
    app.run(main)
