"""Scoring image files with a trained detector (`python -m ae4ad_jax.score`).

The inputs are files or folders (searched recursively): PNG/JPEG/TIFF/BMP images,
DICOM files and NIfTI volumes (scored slice by slice). Each file is decoded within
the caps of `data.decoding.Limits` (`data/image_files.py`), then preprocessed as the
training images were (`data/preprocessing.py`). Writes into the output folder:

- `scores.csv`: file, slice, score, decision (1 = abnormal: score above the
  threshold), the overlay's path;
- `maps/`: each anomaly map over its input as a PNG (colours scaled within each
  image), and for NIfTI inputs the map as a NIfTI volume with the input's affine;
  every name is unique and inside `maps/`, every file written whole;
- `errors.csv`: one row per file that could not be read (whatever went wrong while
  decoding it: a damaged or unsupported file, a declared size over the caps, not a
  regular file), and per overlay that could not be written, with the reason;
- `summary.json`: the detector, its threshold, counts, timing and `status`:
  "running" while scoring, "complete" at the end, "failed" or "interrupted" with
  the error when scoring stopped (the rows so far are then in `scores.csv.partial`
  and `errors.csv.partial`). An older run's `scores.csv` and `errors.csv` are removed
  when scoring starts, so none is mistaken for this run's.

File names that are not UTF-8 are written with their undecodable bytes escaped
(`\\xe9`), in the CSVs and in the names of their maps.
"""

import collections
import concurrent.futures
import csv
import functools
import hashlib
import os
import time

import numpy as np
from PIL import Image

from ae4ad_jax.core import files, progress
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import image_files, nifti_files
from ae4ad_jax.data.decoding import Limits, UnreadableFile, describe
from ae4ad_jax.data.preprocessing import convert_image
from ae4ad_jax.serving import detector as detector_lib

SCORES_FILE, ERRORS_FILE, SUMMARY_FILE, MAPS_DIR = ("scores.csv", "errors.csv",
                                                    "summary.json", "maps")
OVERLAY_MIN_SIZE = 256  # overlays are enlarged (nearest) to at least this many pixels
OVERLAY_ALPHA = 0.6
PENDING_OVERLAYS = 256
PNG_COMPRESSION = 1  # zlib level of the overlays: fast to write, ~1.5x the smallest size
NAME_BYTES = 160  # longer path components of map names are shortened (and hashed)


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
    with files.atomic_path(path) as partial:
        overlay(image, values).save(partial, format="PNG", compress_level=PNG_COMPRESSION)


def shown(path: str) -> str:
    """A path as text that any UTF-8 file can hold: bytes that are not UTF-8 escaped."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _reason(error: BaseException) -> str:
    """The error row's reason for a file whose decoding raised `error`."""
    if isinstance(error, UnreadableFile):
        return str(error)
    if isinstance(error, MemoryError):
        return "out of memory while decoding it (MemoryError)"
    return f"cannot be decoded ({describe(error)})"


class MapNames:
    """Unique names under maps/: an input's path relative to the inputs' common folder,
    without its suffix (NIfTI slices add `_sliceNNNN`), each component made safe (bytes
    that are not UTF-8 escaped, "." and ".." replaced, long ones shortened), and `_2`,
    `_3`, ... on a clash, compared without case for file systems that fold it."""

    def __init__(self, root):
        self.root, self.used = root, set()

    @staticmethod
    def _safe(part):
        if part in (".", "..", ""):
            return "_"
        if len(part.encode()) > NAME_BYTES:
            return part[:NAME_BYTES // 4] + "~" + hashlib.sha1(part.encode()).hexdigest()[:12]
        return part

    def allocate(self, path, number, suffix) -> str:
        relative = shown(os.path.relpath(path, self.root))
        ending = (".nii.gz" if relative.lower().endswith(".nii.gz")
                  else os.path.splitext(relative)[1])
        stem = os.path.join(*[self._safe(part) for part in
                              relative[:len(relative) - len(ending)].split(os.sep)])
        if number is not None:
            stem += f"_slice{number:04d}"
        name, copy = stem + suffix, 1
        while name.casefold() in self.used:
            copy += 1
            name = f"{stem}_{copy}{suffix}"
        self.used.add(name.casefold())
        return os.path.join(MAPS_DIR, name)


class Outputs:
    """The files written into --out: rows are appended as batches finish; scores.csv and
    errors.csv are written under temporary names and renamed when scoring ends."""

    def __init__(self, out_dir, root, detector, write_overlays):
        self.out_dir, self.detector = out_dir, detector
        self.write_overlays = write_overlays
        os.makedirs(os.path.join(out_dir, MAPS_DIR), exist_ok=True)
        self.scores_path = os.path.join(out_dir, SCORES_FILE)
        self.scores_file = open(files.partial_path(self.scores_path), "w", newline="",
                                encoding="utf-8")
        self.scores = csv.writer(self.scores_file)
        self.scores.writerow(["file", "slice", "score", "decision", "map"])
        self.errors = []
        self.names = MapNames(root)
        self.volumes = {}  # NIfTI path -> {slice: map} until every slice is scored
        self.counts = {"images": 0, "abnormal": 0, "unreadable": 0, "maps_unwritten": 0}
        # PNG encoding releases the GIL: overlays are written by threads, at most
        # PENDING_OVERLAYS in flight, while the next batch is read and scored.
        self.pool = concurrent.futures.ThreadPoolExecutor(min(os.cpu_count() or 1, 8))
        self.pending = collections.deque()

    def unreadable(self, path, error):
        self.errors.append([shown(path), _reason(error)])
        self.counts["unreadable"] += 1

    def _unwritten(self, path, relative, error):
        self.errors.append([shown(path), f"its map {relative} could not be written "
                                         f"({describe(error)})"])
        self.counts["maps_unwritten"] += 1

    def _collect(self, limit):
        while len(self.pending) > limit:
            path, relative, future = self.pending.popleft()
            try:
                future.result()
            except Exception as error:  # a full disk, a name the file system refuses
                self._unwritten(path, relative, error)

    def add(self, item, image, score, values):
        read, number = item
        decision = "" if self.detector.threshold is None else \
            int(score > self.detector.threshold)
        relative = ""
        if self.write_overlays and values is not None:
            relative = self.names.allocate(read.path, number, ".png")
            target = os.path.join(self.out_dir, relative)
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self.pending.append((read.path, relative, self.pool.submit(
                    _write_overlay, image, values, target)))
            except OSError as error:
                self._unwritten(read.path, relative, error)
            self._collect(PENDING_OVERLAYS)
        self.scores.writerow([shown(read.path), "" if number is None else number,
                              f"{score:.8g}", decision, relative])
        self.counts["images"] += 1
        self.counts["abnormal"] += decision == 1
        if read.volume is not None and values is not None:
            maps = self.volumes.setdefault(read.path, {})
            maps[number] = values
            if len(maps) == len(read.slice_numbers):
                self._write_volume(read, [maps[k] for k in sorted(maps)])
                del self.volumes[read.path]

    def _write_volume(self, read, maps):
        relative = self.names.allocate(read.path, None, "_map.nii.gz")
        try:
            nifti_files.write_volume_map(read.volume, maps,
                                         os.path.join(self.out_dir, relative))
        except Exception as error:  # a full disk, a name the file system refuses
            self._unwritten(read.path, relative, error)

    def _finish(self):
        try:
            self._collect(0)
        finally:
            self.pool.shutdown(cancel_futures=True)
            self.scores_file.close()

    def _write_errors(self, path):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "reason"])
            writer.writerows(self.errors)

    def close(self):
        """Every overlay written; scores.csv and errors.csv renamed into place."""
        self._finish()
        files.commit(self.scores_path)
        with files.atomic_path(os.path.join(self.out_dir, ERRORS_FILE)) as partial:
            self._write_errors(partial)

    def abort(self):
        """After a failure: the rows so far stay in scores.csv.partial, errors.csv.partial."""
        try:
            self._finish()
        finally:
            self._write_errors(files.partial_path(os.path.join(self.out_dir, ERRORS_FILE)))


def _decoded(paths, detector, outputs, limits, nifti_axis, nifti_rotations, bar):
    """(ReadFile, its slices as the model's uint8 images) per readable file; whatever goes
    wrong while reading and converting a file becomes its row in errors.csv."""
    size, channels = detector.config.image_size, detector.config.channels
    for path in paths:
        try:
            read = image_files.read(path, limits, nifti_axis, nifti_rotations)
            images = [convert_image(pil, size, channels) for pil in read.slices]
        except Exception as error:  # one bad file never ends the run
            outputs.unreadable(path, error)
        else:
            read.slices = None  # the decoded slices are not needed any more
            yield read, images
        bar.update()


def _batches(decoded, batch):
    """(items, images) batches of `batch` slices across files."""
    items, images = [], []
    for read, slices in decoded:
        for number, image in zip(read.slice_numbers, slices, strict=True):
            items.append((read, number))
            images.append(image)
            if len(items) == batch:
                yield items, np.stack(images)
                items, images = [], []
    if items:
        yield items, np.stack(images)


def _clear(out_dir, summary):
    """Creates --out, removes an older run's results, and says this one is running."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name in (SCORES_FILE, ERRORS_FILE):
            for path in (os.path.join(out_dir, name),
                         files.partial_path(os.path.join(out_dir, name))):
                if os.path.lexists(path):
                    os.remove(path)
        files.write_json(os.path.join(out_dir, SUMMARY_FILE), {**summary, "status": "running"})
    except OSError as error:
        raise UserError(f"--out {out_dir} cannot be written: {error}.") from None


def score_files(workdir, inputs, out_dir, member=0, nifti_axis=2, nifti_rotations=1,
                threshold=None, write_overlays=True, stream=None,
                score="reconstruction", limits: Limits | None = None) -> dict:
    """Scores every file of `inputs` with the score variant `score` and writes --out's
    files; returns the summary."""
    start = time.time()
    if nifti_axis not in (0, 1, 2):
        raise UserError(f"--nifti_axis must be 0, 1 or 2, got {nifti_axis}.")
    paths = [os.path.abspath(f) for f in image_files.list_inputs(inputs)]
    detector = detector_lib.load(workdir, member, score)
    if threshold is not None:
        detector.threshold, detector.false_positive_rate = float(threshold), None
    summary = {
        "workdir": os.path.abspath(workdir),
        "member": {"member": detector.index, **detector.hparams},
        "score": detector.variant, "epoch": detector.epoch, "threshold": detector.threshold,
        "threshold_source": ("--threshold" if threshold is not None else
                             None if detector.threshold is None else "thresholds.json"),
        "false_positive_rate": detector.false_positive_rate, "files": len(paths)}
    _clear(out_dir, summary)
    root = os.path.commonpath([os.path.dirname(f) for f in paths])
    outputs = Outputs(out_dir, root, detector, write_overlays)
    first = 0
    try:
        with progress.bar(len(paths), "scoring", "files", stream=stream) as bar:
            decoded = _decoded(paths, detector, outputs, limits or Limits(), nifti_axis,
                               nifti_rotations, bar)
            for items, images in _batches(decoded, detector.config.eval.batch_size):
                out = detector.score(images, first)
                first += len(items)
                maps = out.get("map")
                for i, item in enumerate(items):
                    outputs.add(item, images[i], float(out["score"][i]),
                                None if maps is None else maps[i])
        outputs.close()
        summary["status"] = "complete"
    except BaseException as error:
        outputs.abort()
        summary["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) \
            else "failed"
        summary["error"] = describe(error)
        raise
    finally:
        summary.update({
            "files_unreadable": outputs.counts["unreadable"],
            "maps_unwritten": outputs.counts["maps_unwritten"],
            "images_scored": outputs.counts["images"],
            "images_abnormal": int(outputs.counts["abnormal"]),
            "seconds": round(time.time() - start, 2)})
        files.write_json(os.path.join(out_dir, SUMMARY_FILE), summary)
    return summary
