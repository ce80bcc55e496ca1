"""A trained member's scoring function as a serialised `jax.export` artefact (StableHLO),
written by `python -m ae4ad_jax.export --format=stablehlo`.

The artefact maps a batch of uint8 images [B, H, W, C] (B = the run's
`eval.batch_size`, H, W, C as in training) to image scores [B] and anomaly maps
[B, H, W], with the member's weights inside. `load_stablehlo` needs JAX and numpy
only, not this package's training code: it pads any number of images to whole
batches and cuts the padding off.

The file: the line `MAGIC`, one JSON line (format, input shape and dtype, the
payload's size and SHA-256), then the serialised export (with JAX alone:
`jax.export.deserialize(data.split(b"\\n", 2)[2])`). `load_stablehlo` checks all of
it, and the input's declared size against the caps, before deserialising: a damaged
file is refused, and a tampered header cannot make a call allocate more than
`MAX_BATCH` images. The checksum finds damage, not intent: a StableHLO file is a program,
so load one only from someone you trust (docs/detector.md, "Trust").
"""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.config.checks import MAX_BATCH, MAX_IMAGE_SIZE
from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.serving import detector as detector_lib

PLATFORMS = ("cpu", "cuda", "tpu")
MAGIC = b"ae4ad-jax scorer\n"
FORMAT = 1
HEADER_BYTES = 4096  # the JSON line is read only this far


def export_stablehlo(workdir: str, index: int, out_path: str) -> dict:
    """Writes member `index`'s scoring program to `out_path`; returns what it takes and gives."""
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
        raise UserError(f"Cannot export the scoring program of {workdir} member {index}: "
                        f"{str(error).splitlines()[0]}") from None
    payload = bytes(exported.serialize())
    header = {"format": FORMAT, "input": list(shape), "dtype": "uint8",
              "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    with files.atomic_path(out_path) as partial, open(partial, "wb") as f:
        f.write(MAGIC + json.dumps(header).encode() + b"\n" + payload)
    return {"member": detector.index, **detector.hparams, "epoch": detector.epoch,
            "input": list(shape), "dtype": "uint8"}


def _checked_payload(path, data):
    """The serialised export inside a StableHLO file, and its input shape, after checking the
    magic, the header, the size and the checksum."""
    def refuse(why):
        raise UserError(f"{path} is not a usable StableHLO file: {why}. Export it again "
                        "with `python -m ae4ad_jax.export --format=stablehlo`.")

    if not data.startswith(MAGIC):
        refuse("it does not start as a StableHLO file of ae4ad-jax does (damaged, another "
               "kind of file, or exported before these files carried a checksum)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + HEADER_BYTES)
    try:
        header = json.loads(data[len(MAGIC):end]) if end > 0 else None
        shape = tuple(int(n) for n in header["input"])
        size, digest = int(header["bytes"]), str(header["sha256"])
        fine = header["format"] == FORMAT and header["dtype"] == "uint8"
    except (ValueError, TypeError, KeyError):
        refuse("its header is damaged")
    if not fine:
        refuse(f"its format is {header.get('format')} with {header.get('dtype')} input; this "
               f"version reads format {FORMAT} with uint8 input")
    payload = data[end + 1:]
    if len(payload) != size or hashlib.sha256(payload).hexdigest() != digest:
        refuse("its content does not match its checksum (the file is damaged or was edited)")
    if len(shape) != 4 or not (1 <= shape[0] <= MAX_BATCH and all(
            1 <= n <= MAX_IMAGE_SIZE for n in shape[1:3]) and shape[3] in (1, 3)):
        refuse(f"its input shape {shape} is outside [1..{MAX_BATCH}, 1..{MAX_IMAGE_SIZE}, "
               f"1..{MAX_IMAGE_SIZE}, 1 or 3]")
    return payload, shape


def load_stablehlo(path: str):
    """`score(images) -> {"score": [N], "map": [N, H, W]}` for uint8 images [N, H, W, C]."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise UserError(f"Scorer {path} cannot be read: {error}.") from None
    payload, shape = _checked_payload(path, data)
    exported = jax.export.deserialize(bytearray(payload))
    declared = exported.in_avals[0]
    if tuple(declared.shape) != shape or declared.dtype != jnp.uint8:
        raise UserError(f"{path} is not a usable StableHLO file: its program takes "
                        f"{declared.dtype} {declared.shape}, its header says uint8 {shape}.")

    def score(images):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape[1:]:
            raise ValueError(f"This StableHLO file takes uint8 images [N, {shape[1]}, {shape[2]}, "
                             f"{shape[3]}], got {images.dtype} {images.shape}.")
        n, batch = len(images), shape[0]
        padded = np.zeros((-(-n // batch) * batch,) + shape[1:], np.uint8)
        padded[:n] = images
        parts = [exported.call(padded[i:i + batch]) for i in range(0, len(padded), batch)]
        return {key: np.concatenate([np.asarray(p[key]) for p in parts])[:n]
                for key in parts[0]}

    return score
