"""Scoring image files with a trained detector (`python -m ae4ad_jax.score`).

The inputs are files or folders (searched recursively): PNG/JPEG/TIFF/BMP images,
DICOM files and NIfTI volumes (scored slice by slice). Each image or slice is
preprocessed as the training images were (`data/image_files.py`,
`data/preprocessing.py`). Writes into the output folder:

- `scores.csv`: file, slice, score, decision (1 = abnormal: score above the
  threshold), the overlay's path;
- `maps/`: each anomaly map over its input as a PNG (colours scaled within each
  image), and for NIfTI inputs the map as a NIfTI volume with the input's affine;
- `errors.csv`: files that could not be read, with the reason (the rest are scored);
- `summary.json`: the detector, its threshold, counts and timing.
"""

import collections
import concurrent.futures
import csv
import functools
import os
import time

import numpy as np
from PIL import Image

from ae4ad_jax.core import files, progress
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import image_files
from ae4ad_jax.data.preprocessing import convert_image
from ae4ad_jax.serving import detector as detector_lib

SCORES_FILE, ERRORS_FILE, SUMMARY_FILE, MAPS_DIR = ("scores.csv", "errors.csv",
                                                    "summary.json", "maps")
OVERLAY_MIN_SIZE = 256  # overlays are enlarged (nearest) to at least this many pixels
OVERLAY_ALPHA = 0.6
PENDING_OVERLAYS = 256
PNG_COMPRESSION = 1  # zlib level of the overlays: fast to write, ~1.5x the smallest size


@functools.cache
def _colours():
    """The inferno colour map as a [256, 3] lookup table in [0, 1]."""
    from matplotlib import colormaps

    return colormaps["inferno"](np.linspace(0.0, 1.0, 256))[:, :3]


def overlay(image, values) -> Image.Image:
    """The map (inferno colours, 0 to its maximum) blended over the input, [S, S, C] uint8;
    where the map is low the input shows through."""
    values = np.asarray(values, np.float64)
    scale = values.max() if values.max() > 0 else 1.0
    level = np.clip(values / scale, 0.0, 1.0)
    colour = _colours()[np.rint(level * 255).astype(np.int32)]
    gray = np.repeat(image[..., :1], 3, -1) if image.shape[-1] == 1 else image
    alpha = OVERLAY_ALPHA * level[..., None]
    blended = (1 - alpha) * gray / 255.0 + alpha * colour
    result = Image.fromarray(np.rint(blended * 255).astype(np.uint8), "RGB")
    factor = max(1, -(-OVERLAY_MIN_SIZE // image.shape[0]))
    return result.resize((image.shape[1] * factor, image.shape[0] * factor), Image.NEAREST)


def _write_overlay(image, values, path):
    overlay(image, values).save(path, compress_level=PNG_COMPRESSION)


class Outputs:
    """The files written into --out: rows are appended as batches finish; scores.csv and
    errors.csv are written under temporary names and renamed when scoring ends."""

    def __init__(self, out_dir, root, detector, write_overlays):
        self.out_dir, self.root, self.detector = out_dir, root, detector
        self.write_overlays = write_overlays
        os.makedirs(os.path.join(out_dir, MAPS_DIR), exist_ok=True)
        self.scores_path = os.path.join(out_dir, SCORES_FILE)
        self.scores_file = open(files.partial_path(self.scores_path), "w", newline="")
        self.scores = csv.writer(self.scores_file)
        self.scores.writerow(["file", "slice", "score", "decision", "map"])
        self.errors = []
        self.volumes = {}  # NIfTI path -> {slice: map} until every slice is scored
        self.counts = {"images": 0, "abnormal": 0}
        self.stems = {}  # input path -> its name under maps/
        # PNG encoding releases the GIL: overlays are written by threads, at most
        # PENDING_OVERLAYS in flight, while the next batch is read and scored.
        self.pool = concurrent.futures.ThreadPoolExecutor(min(os.cpu_count() or 1, 8))
        self.pending = collections.deque()

    def _name(self, path, number, suffix):
        stem = self.stems.get(path)
        if stem is None:  # the relative path without its suffix, unless another file has it
            relative = os.path.relpath(path, self.root)
            ending = (".nii.gz" if relative.lower().endswith(".nii.gz")
                      else os.path.splitext(relative)[1])
            stem = relative[:len(relative) - len(ending)]
            if stem in self.stems.values():
                stem += "_" + ending.lstrip(".").replace(".", "_")
            self.stems[path] = stem
        if number is not None:
            stem += f"_slice{number:04d}"
        return os.path.join(MAPS_DIR, stem + suffix)

    def add(self, item, image, score, values):
        read, number = item
        decision = "" if self.detector.threshold is None else \
            int(score > self.detector.threshold)
        relative = ""
        if self.write_overlays and values is not None:
            relative = self._name(read.path, number, ".png")
            target = os.path.join(self.out_dir, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self.pending.append(self.pool.submit(_write_overlay, image, values, target))
            while len(self.pending) > PENDING_OVERLAYS:
                self.pending.popleft().result()
        self.scores.writerow([read.path, "" if number is None else number,
                              f"{score:.8g}", decision, relative])
        self.counts["images"] += 1
        self.counts["abnormal"] += decision == 1
        if read.volume is not None and values is not None:
            maps = self.volumes.setdefault(read.path, {})
            maps[number] = values
            if len(maps) == len(read.slices):
                image_files.write_volume_map(
                    read.volume, [maps[k] for k in sorted(maps)],
                    os.path.join(self.out_dir, self._name(read.path, None, "_map.nii.gz")))
                del self.volumes[read.path]

    def close(self):
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(cancel_futures=True)
        self.scores_file.close()
        files.commit(self.scores_path)
        with files.atomic_path(os.path.join(self.out_dir, ERRORS_FILE)) as partial, \
                open(partial, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "reason"])
            writer.writerows(self.errors)


def _batches(paths, detector, outputs, nifti_axis, nifti_rotations, bar):
    """(items, images) batches of `eval.batch_size` slices across files; unreadable files
    go to `outputs.errors`."""
    size, channels = detector.config.image_size, detector.config.channels
    batch = detector.config.eval.batch_size
    items, images = [], []
    for path in paths:
        try:
            read = image_files.read(path, nifti_axis, nifti_rotations)
        except image_files.UnreadableFile as error:
            outputs.errors.append([path, str(error)])
            bar.update()
            continue
        for number, pil in zip(read.slice_numbers, read.slices, strict=True):
            items.append((read, number))
            images.append(convert_image(pil, size, channels))
            if len(items) == batch:
                yield items, np.stack(images)
                items, images = [], []
        bar.update()
    if items:
        yield items, np.stack(images)


def score_files(workdir, inputs, out_dir, member=0, nifti_axis=2, nifti_rotations=1,
                threshold=None, write_overlays=True, stream=None,
                score="reconstruction") -> dict:
    """Scores every file of `inputs` with the score variant `score` and writes --out's
    files; returns the summary."""
    start = time.time()
    if nifti_axis not in (0, 1, 2):
        raise UserError(f"--nifti_axis must be 0, 1 or 2, got {nifti_axis}.")
    paths = image_files.list_inputs(inputs)
    detector = detector_lib.load(workdir, member, score)
    if threshold is not None:
        detector.threshold, detector.false_positive_rate = float(threshold), None
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out_dir} cannot be created: {error}.") from None
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in paths])
    outputs = Outputs(out_dir, root, detector, write_overlays)
    first = 0
    with progress.Progress(len(paths), "scoring", "files", stream=stream) as bar:
        for items, images in _batches([os.path.abspath(f) for f in paths], detector,
                                      outputs, nifti_axis, nifti_rotations, bar):
            out = detector.score(images, first)
            first += len(items)
            maps = out.get("map")
            for i, item in enumerate(items):
                outputs.add(item, images[i], float(out["score"][i]),
                            None if maps is None else maps[i])
    outputs.close()
    seconds = time.time() - start
    summary = {
        "workdir": os.path.abspath(workdir), "member": detector.member,
        "score": detector.variant,
        "epoch": detector.epoch, "threshold": detector.threshold,
        "threshold_source": ("--threshold" if threshold is not None else
                             None if detector.threshold is None else "thresholds.json"),
        "false_positive_rate": detector.false_positive_rate,
        "files": len(paths), "files_unreadable": len(outputs.errors),
        "images_scored": outputs.counts["images"],
        "images_abnormal": int(outputs.counts["abnormal"]),
        "seconds": round(seconds, 2),
    }
    files.write_json(os.path.join(out_dir, SUMMARY_FILE), summary)
    return summary
