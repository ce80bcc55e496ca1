"""Reading the images a user scores: PNG/JPEG/TIFF/BMP, DICOM and NIfTI files.

Every file becomes 2-D slices of uint8 intensities, which then pass through the
training preprocessing (`preprocessing.convert_image`: gray or RGB, bilinear
resize to the model's size). How intensities become 0-255:

- PNG/JPEG/TIFF/BMP: as stored (PIL), as the training images were read;
- DICOM (pydicom): the modality rescale (slope, intercept), then the file's first
  window (WindowCenter/WindowWidth) mapped linearly to 0-255, or without a window
  the file's minimum-maximum range; MONOCHROME1 is inverted; RGB stays RGB;
  each frame of a multi-frame file is a slice;
- NIfTI (nibabel): the volume's minimum-maximum range mapped to 0-255, slices
  taken along `axis` and turned by `rotations` quarter turns (1 shows an axial
  slice of an RAS volume with anterior up, as viewers do).

A file that cannot be read raises `UnreadableFile` with the reason; the caller
lists it and goes on.
"""

import dataclasses
import os

import numpy as np
from PIL import Image

from ae4ad_jax.core.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_MAGIC_OFFSET = 128  # "DICM" follows a 128-byte preamble in a DICOM file


class UnreadableFile(Exception):
    """A file that is not a supported image or cannot be decoded; the message says why."""


@dataclasses.dataclass
class Volume:
    """What writing a NIfTI anomaly map back needs: the input's shape and affine."""

    shape: tuple
    affine: np.ndarray
    header: object
    axis: int
    rotations: int


@dataclasses.dataclass
class ReadFile:
    """A file's slices as PIL images (mode "L" or "RGB"); `slice_numbers` name them
    (None for a single image), `volume` is set for NIfTI inputs."""

    path: str
    kind: str  # "image" | "dicom" | "nifti"
    slices: list
    slice_numbers: list
    volume: Volume | None = None


def kind_of(path: str) -> str | None:
    """"image", "dicom", "nifti" or None (unsupported); suffix first, then DICOM's magic."""
    name = path.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    try:
        with open(path, "rb") as f:
            f.seek(DICOM_MAGIC_OFFSET)
            if f.read(4) == b"DICM":
                return "dicom"
    except OSError:
        pass
    return None


def list_inputs(paths) -> list[str]:
    """Every file named by `paths` (files, and folders searched recursively, in sorted
    order), each once. A path that does not exist is a UserError."""
    files, seen = [], set()
    for path in paths:
        path = os.path.expanduser(path)
        if os.path.isdir(path):
            found = []
            for directory, subdirs, names in os.walk(path):
                subdirs.sort()
                found.extend(os.path.join(directory, n) for n in sorted(names))
        elif os.path.isfile(path):
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


def to_uint8(values, low: float, high: float) -> np.ndarray:
    """Linear map of [low, high] to 0-255 (clipped, rounded); a flat range gives 0."""
    values = np.asarray(values, np.float64)
    if not high > low:
        return np.zeros(values.shape, np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_image(path: str) -> ReadFile:
    try:
        with Image.open(path) as raw:
            raw.load()
            frames = getattr(raw, "n_frames", 1)
            if frames != 1:
                raise UnreadableFile(f"a {frames}-frame image; give one image per file")
            image = raw.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableFile(f"not a readable image ({error})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float gray
        array = np.asarray(image, np.float64)
        image = Image.fromarray(to_uint8(array, array.min(), array.max()))
    return ReadFile(path, "image", [image], [None])


def _first(value):
    """A DICOM value that may be multi-valued (WindowCenter "40\\400"): its first entry."""
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) \
            else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def read_dicom(path: str) -> ReadFile:
    import pydicom
    from pydicom import pixels

    try:
        ds = pydicom.dcmread(path)
        array = ds.pixel_array
    except Exception as error:  # pydicom raises many types for bad or pixel-less files
        raise UnreadableFile(f"not a readable DICOM image ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''})") from None
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if samples == 3:  # colour: 8-bit RGB as stored
        if str(getattr(ds, "PhotometricInterpretation", "RGB")) != "RGB":
            array = pixels.convert_color_space(array, ds.PhotometricInterpretation, "RGB")
        stack = array if frames > 1 else array[None]
        images = [Image.fromarray(np.asarray(f, np.uint8), "RGB") for f in stack]
    else:
        values = pixels.apply_modality_lut(array, ds).astype(np.float64)
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            low, high = center - width / 2, center + width / 2
        else:
            low, high = values.min(), values.max()
        scaled = to_uint8(values, low, high)
        if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
            scaled = 255 - scaled
        stack = scaled if frames > 1 else scaled[None]
        images = [Image.fromarray(f, "L") for f in stack]
    numbers = list(range(len(images))) if frames > 1 else [None]
    return ReadFile(path, "dicom", images, numbers)


def read_nifti(path: str, axis: int, rotations: int) -> ReadFile:
    import nibabel

    try:
        image = nibabel.load(path)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as error:  # nibabel raises many types for bad files
        raise UnreadableFile(f"not a readable NIfTI volume ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UnreadableFile(f"a NIfTI image of shape {data.shape}; scoring takes 3-D "
                             "volumes (split 4-D series into volumes)")
    if not np.isfinite(data).all():
        raise UnreadableFile("the volume holds NaN or infinite values")
    scaled = np.moveaxis(to_uint8(data, data.min(), data.max()), axis, 0)  # a view
    slices = [Image.fromarray(np.ascontiguousarray(np.rot90(plane, rotations)), "L")
              for plane in scaled]
    volume = Volume(tuple(data.shape), image.affine, image.header, axis, rotations)
    return ReadFile(path, "nifti", slices, list(range(len(slices))), volume)


def read(path: str, nifti_axis: int = 2, nifti_rotations: int = 1) -> ReadFile:
    kind = kind_of(path)
    if kind is None:
        raise UnreadableFile("unsupported file type (supported: "
                             f"{', '.join(IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES)})")
    if kind == "image":
        return read_image(path)
    if kind == "dicom":
        return read_dicom(path)
    return read_nifti(path, nifti_axis, nifti_rotations)


def volume_map(volume: Volume, maps) -> np.ndarray:
    """Slice maps ([K, S, S], the model's size, in slice order) back on the input's voxel
    grid: each resized bilinearly to the slice's shape and turned back."""
    in_plane = [size for a, size in enumerate(volume.shape) if a != volume.axis]
    turned = in_plane[::-1] if volume.rotations % 2 else in_plane  # [rows, columns] shown
    out = np.zeros(volume.shape, np.float32)
    for k, values in enumerate(maps):
        resized = Image.fromarray(np.asarray(values, np.float32), "F").resize(
            (turned[1], turned[0]), resample=Image.BILINEAR)
        index = [slice(None)] * 3
        index[volume.axis] = k
        out[tuple(index)] = np.rot90(np.asarray(resized), -volume.rotations)
    return out


def write_volume_map(volume: Volume, maps, path: str) -> None:
    """The anomaly map as a float32 NIfTI volume with the input's affine."""
    import nibabel

    header = volume.header.copy()
    header.set_data_dtype(np.float32)
    image = nibabel.Nifti1Image(volume_map(volume, maps), volume.affine, header)
    tmp = path + ".tmp.nii.gz" if path.endswith(".gz") else path + ".tmp.nii"
    nibabel.save(image, tmp)
    os.replace(tmp, path)
