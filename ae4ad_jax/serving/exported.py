"""A trained member's scoring function as a serialised `jax.export` artefact (StableHLO),
written by `python -m ae4ad_jax.scorer`.

The artefact maps a batch of uint8 images [B, H, W, C] (B = the run's
`eval.batch_size`, H, W, C as in training) to image scores [B] and anomaly maps
[B, H, W], with the member's weights inside. `load_scorer` needs JAX and numpy
only, not this package's training code: it pads any number of images to whole
batches and cuts the padding off.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.serving import detector as detector_lib

PLATFORMS = ("cpu", "cuda", "tpu")


def export_scorer(workdir: str, index: int, out_path: str) -> dict:
    """Writes member `index`'s scorer to `out_path`; returns what it takes and gives."""
    detector = detector_lib.load(workdir, index)
    config, method, weights = detector.config, detector.method, detector.weights
    batch = config.eval.batch_size
    shape = (batch,) + detector.image_shape

    def score(images):
        out = scoring.score_images(weights, images, method=method, batch_size=batch,
                                    with_maps=True)
        result = {"score": out["score"][0]}
        if "map" in out:
            result["map"] = out["map"][0]
        return result

    try:
        exported = jax.export.export(jax.jit(score), platforms=PLATFORMS)(
            jax.ShapeDtypeStruct(shape, jnp.uint8))
    except Exception as error:  # a platform this program cannot be lowered for
        raise UserError(f"Cannot export the scorer of {workdir} member {index}: "
                        f"{str(error).splitlines()[0]}") from None
    with files.atomic_path(out_path) as partial, open(partial, "wb") as f:
        f.write(exported.serialize())
    return {**detector.member, "epoch": detector.epoch, "input": list(shape),
            "dtype": "uint8"}


def load_scorer(path: str):
    """`score(images) -> {"score": [N], "map": [N, H, W]}` for uint8 images [N, H, W, C]."""
    with open(path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    shape = exported.in_avals[0].shape

    def score(images):
        images = np.asarray(images, np.uint8)
        if images.shape[1:] != shape[1:]:
            raise ValueError(f"The scorer takes images of shape {shape[1:]}, got "
                             f"{images.shape[1:]}.")
        n, batch = len(images), shape[0]
        padded = np.zeros((-(-n // batch) * batch,) + shape[1:], np.uint8)
        padded[:n] = images
        parts = [exported.call(padded[i:i + batch]) for i in range(0, len(padded), batch)]
        return {key: np.concatenate([np.asarray(p[key]) for p in parts])[:n]
                for key in parts[0]}

    return score
