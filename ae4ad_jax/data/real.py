"""The benchmark's real datasets and the user's own folders: file listings and decoding.

A listing turns a raw folder in its published layout into splits of `Item`s
(image path, label, optional mask path), checking the layout as it goes so
that every problem is reported with the file or folder it concerns, before
anything is written; a listed name that leads outside its folder is refused.
Decoding is the scoring command's (`decoding.decode_image`, within the caps of
config group `input_limits`), then the reference's preprocessing: PIL
`convert("L")` (`"RGB"` for Camelyon16), bilinear resize to the configured size
(masks: `convert("L")`, nearest, then > 0), uint8.
"""

import csv
import dataclasses
import json
import os

import numpy as np
from PIL import Image

from ae4ad_jax.core.datasets import DATA_ROOT, SPECS
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data.decoding import Limits, UnreadableFile, decode_image, open_image
from ae4ad_jax.data.image_files import IMAGE_SUFFIXES
from ae4ad_jax.data.preprocessing import convert_image


@dataclasses.dataclass(frozen=True)
class Item:
    image: str
    label: int
    mask: str | None = None


def default_root(name: str) -> str:
    return os.path.join(os.path.expanduser(DATA_ROOT), SPECS[name].folder)


def _require_dir(path, name, hint=""):
    if not os.path.isdir(path):
        raise UserError(f"Folder {path} of dataset {name!r} does not exist.{hint}")


def _missing_root_hint(name):
    spec = SPECS[name]
    if spec.layout == "folder":
        return (" Point --config.data_dir at a folder holding images/ and data.json "
                "(see README, 'Your own data').")
    return (f" Download {spec.title} from {spec.source}, extract it to "
            f"{default_root(name)} (the reference's place) or pass "
            "--config.data_dir=<folder>.")


def _inside(folder, entry, source):
    """`folder`/`entry`, refused when the entry (a name listed in `source`) is absolute or
    leads outside `folder`."""
    path = os.path.normpath(os.path.join(folder, entry))
    if not entry or os.path.isabs(entry) or "\0" in entry or \
            os.path.commonpath([os.path.abspath(folder), os.path.abspath(path)]) != \
            os.path.abspath(folder):
        raise UserError(f"{source} lists {entry!r}, which is not a file name inside "
                        f"{folder}: names must be relative and stay within the folder.")
    return path


def _images_in(folder, name):
    _require_dir(folder, name)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    return [os.path.join(folder, f) for f in files]


def _list_medad(root, name, with_masks):
    path = os.path.join(root, "data.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: dataset {name!r} needs images/ and data.json "
                        '({"train": {"0": [...]}, "test": {"0": [...], "1": [...]}}).')
    try:
        with open(path) as f:
            listing = json.load(f)
        parts = {("train", 0): listing["train"]["0"], ("test", 0): listing["test"]["0"],
                 ("test", 1): listing["test"]["1"]}
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON: {error}.") from None
    except (KeyError, TypeError) as error:
        raise UserError(f"{path} lacks key {error}: it needs train/0, test/0 and "
                        "test/1 lists of file names.") from None
    mask_dir = os.path.join(root, "masks")
    masks = with_masks and os.path.isdir(mask_dir)
    splits = {"train": [], "test": []}
    for (split, label), names in parts.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f"{path}: {split}/{label} must be a list of file names.")
        for file_name in names:
            mask = None
            image = _inside(os.path.join(root, "images"), file_name, path)
            if masks and split == "test":
                candidate = _inside(mask_dir, file_name, path)
                if os.path.exists(candidate):
                    mask = candidate
                elif label == 1:
                    raise UserError(f"Abnormal test image {file_name} has no mask "
                                    f"{candidate} (masks/ exists, so every abnormal image "
                                    "needs one).")
            splits[split].append(Item(image, label, mask))
    return splits, masks


def _list_brats(root, name):
    test_dir = os.path.join(root, "test")
    abnormal = []
    for image in _images_in(os.path.join(test_dir, "tumor"), name):
        file_name = os.path.basename(image)
        mask = os.path.join(test_dir, "annotation", file_name.replace("flair", "seg"))
        if not os.path.isfile(mask):
            raise UserError(f"Tumour slice {image} has no mask {mask} (the mask of NAME is "
                            "NAME with 'flair' replaced by 'seg', in test/annotation/).")
        abnormal.append(Item(image, 1, mask))
    normal = [Item(p, 0) for p in _images_in(os.path.join(test_dir, "normal"), name)]
    train = [Item(p, 0) for p in _images_in(os.path.join(root, "train"), name)]
    return {"train": train, "test": normal + abnormal}


def _read_isic_csv(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # with or without a BOM
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"Ground-truth CSV {path} cannot be read: {error}.") from None
    if not rows or not {"image", "NV"} <= set(rows[0]):
        raise UserError(f"Ground-truth CSV {path} needs the columns 'image' and 'NV' "
                        f"(found {sorted(rows[0]) if rows else 'no rows'}).")
    try:
        return [(row["image"], 0 if float(row["NV"]) == 1 else 1) for row in rows]
    except ValueError as error:
        raise UserError(f"Ground-truth CSV {path}: a value of column NV is not a number "
                        f"({error}).") from None


def _list_isic(root, name):
    splits = {}
    for split, part in (("train", "Training"), ("test", "Test")):
        stem = f"ISIC2018_Task3_{part}"
        rows = _read_isic_csv(os.path.join(root, f"{stem}_GroundTruth", f"{stem}_GroundTruth.csv"))
        images = os.path.join(root, f"{stem}_Input")
        _require_dir(images, name)
        if split == "train":
            rows = [(image, label) for image, label in rows if label == 0]
        source = f"{stem}_GroundTruth.csv"
        items = [Item(_inside(images, f"{image}.jpg", source), label) for image, label in rows]
        splits[split] = sorted(items, key=lambda item: item.label)
    return splits


def _list_c16(root, name):
    return {
        "train": [Item(p, 0) for p in _images_in(os.path.join(root, "train", "good"), name)],
        "test": [Item(p, 0) for p in _images_in(os.path.join(root, "test", "good"), name)]
        + [Item(p, 1) for p in _images_in(os.path.join(root, "test", "Ungood"), name)],
    }


def list_dataset(name: str, root: str):
    """(splits {"train", "test"} of Items, has_masks) after checking the layout and files."""
    _require_dir(root, name, _missing_root_hint(name))
    spec = SPECS[name]
    has_masks = spec.has_masks
    if spec.layout in ("medad", "folder"):
        splits, masks = _list_medad(root, name, with_masks=spec.layout == "folder")
        has_masks = masks
    else:
        splits = {"brats": _list_brats, "isic": _list_isic, "c16": _list_c16}[spec.layout](
            root, name)
    for split, items in splits.items():
        if not items:
            raise UserError(f"The {split} split of dataset {name!r} in {root} is empty.")
        missing = [item.image for item in items if not os.path.isfile(item.image)]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UserError(f"Dataset {name!r} lists {missing[0]}{more}, which does not exist.")
    labels = {item.label for item in splits["test"]}
    if labels != {0, 1}:
        raise UserError(f"The test split of dataset {name!r} in {root} needs normal and "
                        f"abnormal images; it has labels {sorted(labels)}.")
    return splits, has_masks


def decode(item: Item, image_size: int, channels: int, with_mask: bool,
           limits: Limits | None = None):
    """(image uint8 [S, S, C], mask uint8 [S, S] or None) as the reference preprocesses,
    each file decoded within `limits` as the score command decodes it."""
    limits = limits or Limits()
    try:
        image = decode_image(item.image, limits)
        size = image.size
        array = convert_image(image, image_size, channels)
    except (UnreadableFile, OSError, ValueError, MemoryError) as error:
        raise UserError(f"Image {item.image} cannot be decoded: {error or 'out of memory'}."
                        ) from None
    if not with_mask:
        return array, None
    if item.mask is None:
        return array, np.zeros((image_size, image_size), np.uint8)
    try:
        with open_image(item.mask, limits) as raw_mask:
            if raw_mask.size != size:
                raise UserError(f"Mask {item.mask} is {raw_mask.size[0]}x{raw_mask.size[1]} but "
                                f"its image {item.image} is {size[0]}x{size[1]}.")
            mask = raw_mask.convert("L").resize((image_size, image_size),
                                                resample=Image.NEAREST)
    except (UnreadableFile, OSError, ValueError, MemoryError) as error:
        raise UserError(f"Mask {item.mask} cannot be decoded: {error}.") from None
    return array, (np.asarray(mask) > 0).astype(np.uint8)
