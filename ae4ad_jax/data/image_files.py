"""The files a user scores: PNG/JPEG/TIFF/BMP images, DICOM files and NIfTI volumes.

`list_inputs` finds them; `read` decodes one into 2-D slices of 8-bit intensities
(`decoding.py`, `dicom_files.py`, `nifti_files.py` say how each format's values
become 0-255), which then pass through the training preprocessing
(`preprocessing.convert_image`: gray or RGB, bilinear resize to the model's size).
A file that cannot be read raises `UnreadableFile` with the reason; the caller
lists it and goes on.
"""

import dataclasses
import os

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import dicom_files, nifti_files
from ae4ad_jax.data.decoding import Limits, UnreadableFile, check_file, decode_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_MAGIC_OFFSET = 128  # "DICM" follows a 128-byte preamble in a DICOM file


@dataclasses.dataclass
class ReadFile:
    """A file's slices as Pillow images (mode "L" or "RGB"); `slice_numbers` name them
    (None for a single image), `volume` is set for NIfTI inputs."""

    path: str
    kind: str  # "image" | "dicom" | "nifti"
    slices: list
    slice_numbers: list
    volume: nifti_files.Volume | None = None


def kind_of(path: str) -> str | None:
    """"image", "dicom", "nifti" or None (unsupported); suffix first, then DICOM's magic.
    Only regular files are opened to look for the magic."""
    name = path.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    try:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                f.seek(DICOM_MAGIC_OFFSET)
                if f.read(4) == b"DICM":
                    return "dicom"
    except OSError:
        pass
    return None


def _walk(folder) -> list[str]:
    """Every entry below `folder` that is not a folder, in sorted order; links to folders
    (not followed) and folders that cannot be listed are kept, for their error rows."""
    found = []

    def unlisted(error):  # a folder that cannot be listed gets its row too
        found.append(error.filename)

    for directory, subdirs, names in os.walk(folder, onerror=unlisted):
        subdirs.sort()
        links = [d for d in subdirs if os.path.islink(os.path.join(directory, d))]
        subdirs[:] = [d for d in subdirs if d not in links]
        found.extend(os.path.join(directory, n) for n in sorted(names + links))
    return found


def list_inputs(paths) -> list[str]:
    """Every file named by `paths` (files, and folders searched recursively, in sorted
    order), each once; entries that are not regular files are kept, for their error
    rows. A path that does not exist is a UserError."""
    files, seen = [], set()
    for path in paths:
        path = os.path.expanduser(path)
        if os.path.isdir(path):
            found = _walk(path)
        elif os.path.lexists(path):
            found = [path]
        else:
            raise UserError(f"Input {path} does not exist.")
        for file in found:
            key = os.path.abspath(file)
            if key not in seen:
                seen.add(key)
                files.append(file)
    if not files:
        raise UserError(f"No files found in {', '.join(paths)}.")
    return files


def read(path: str, limits: Limits | None = None, nifti_axis: int = 2,
         nifti_rotations: int = 1) -> ReadFile:
    """The file's slices, decoded within `limits` (the defaults when None)."""
    limits = limits or Limits()
    check_file(path, limits)
    kind = kind_of(path)
    if kind is None:
        raise UnreadableFile("unsupported file type (supported: "
                             f"{', '.join(IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES)})")
    if kind == "image":
        return ReadFile(path, kind, [decode_image(path, limits)], [None])
    if kind == "dicom":
        slices, frames = dicom_files.read_dicom(path, limits)
        return ReadFile(path, kind, slices, list(range(len(slices))) if frames > 1 else [None])
    slices, volume = nifti_files.read_nifti(path, nifti_axis, nifti_rotations, limits)
    return ReadFile(path, kind, slices, list(range(len(slices))), volume)
