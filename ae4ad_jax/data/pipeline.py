"""From a config to arrays: prepare the TFDS dataset once, read it back.

Splits are read into host memory as uint8 arrays in their stored order
(sorted by `id`); training keeps them uint8 in device memory and converts each
batch to float there (`preprocessing.to_float`), so host memory and transfers
stay 4x smaller.
"""

import dataclasses
import os
import shutil

import numpy as np

from ae4ad_jax.core import datasets, settings
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import real
from ae4ad_jax.data.decoding import Limits

_READ_CHUNK = 1024

ARRAYS = "arrays"  # images given in memory (AnomalyDetector.fit): no files to prepare
DATASETS = ("phantom", *datasets.SPECS, ARRAYS)  # the embedded one, the real ones (and folders)
TFDS_DIR = "~/tensorflow_datasets"  # where prepared datasets are written by default


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset in host memory. Images uint8 [N, H, W, C]; masks uint8 {0,1} [N, H, W].

    `val_images` are normal training images held out by `val_fraction` (possibly none).
    """

    train_images: np.ndarray
    val_images: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    test_masks: np.ndarray | None
    path: str = ""  # the prepared dataset's folder (its files are the run's data)

    @property
    def channels(self) -> int:
        return self.train_images.shape[-1]


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise UserError(f"Unknown dataset {name!r}: known datasets are {', '.join(DATASETS)}.")


def dataset_channels(name: str) -> int | None:
    """The channel count a dataset has (None: the config's choice, gray by default)."""
    if name == "phantom":
        return 1
    spec = datasets.SPECS.get(name)
    return None if spec is None else spec.channels


def resolve_channels(config, images=None):
    """The config with `channels` set when it is 0 ("the dataset's"): the dataset's
    count; for images given in memory, 3 when every image has 3 channels; else 1."""
    if config.channels:
        return config
    channels = dataset_channels(config.dataset)
    if channels is None and images is not None:
        try:
            shapes = [np.shape(image) for image in images]
        except TypeError:  # not images at all: conform() says what it needs
            shapes = []
        channels = 3 if shapes and all(len(s) == 3 and s[-1] == 3 for s in shapes) else 1
    resolved = config.copy_and_resolve_references()
    resolved.channels = channels or 1
    return resolved


def limits(config) -> Limits:
    """The caps on decoding one file (config group `input_limits`; its declared defaults
    where a saved config has none)."""
    return settings.from_config(Limits, config.get("input_limits", None) or {})


def raw_root(config) -> str:
    """The raw folder of a real dataset: `data_dir`, else the reference's default place."""
    if config.data_dir:
        return os.path.expanduser(config.data_dir)
    if config.dataset == "folder":
        raise UserError("Dataset 'folder' needs --config.data_dir=<folder with images/ and "
                        "data.json> (see README, 'Your own data').")
    return real.default_root(config.dataset)


def create_builder(config):
    """The TFDS builder for `config.dataset`; real datasets have their files checked first."""
    from ae4ad_jax.data import builders  # tensorflow_datasets is slow to import

    check_dataset_name(config.dataset)
    if config.dataset == ARRAYS:
        raise UserError("This run's images were given in memory (AnomalyDetector.fit), so "
                        "there is no dataset to read again: score images with "
                        "ae4ad_jax.score or the API instead.")
    kwargs = {"data_dir": os.path.expanduser(config.tfds_dir), "file_format": "array_record"}
    if config.dataset == "phantom":
        p = config.phantom
        builder_config = builders.phantom_config(config.image_size, p.num_train,
                                                 p.num_test_normal, p.num_test_abnormal, p.seed)
        return builders.Phantom(config=builder_config, **kwargs)
    root = raw_root(config)
    splits, has_masks = real.list_dataset(config.dataset, root)
    builder_config = builders.real_config(config.dataset, config.image_size,
                                          resolve_channels(config).channels, root, splits,
                                          has_masks)
    return builders.MedicalImages(splits=splits, limits=limits(config), config=builder_config,
                                  **kwargs)


def split_validation(train_images, fraction, seed):
    """(train, val): a seeded random `fraction` of the normal training images held out."""
    if not fraction:
        return train_images, train_images[:0]
    order = np.random.default_rng(seed).permutation(len(train_images))
    num_val = int(round(fraction * len(train_images)))
    if num_val < 1 or num_val >= len(train_images):
        raise UserError(f"val_fraction={fraction} leaves {num_val} of {len(train_images)} "
                        "training images for validation; choose a value that leaves both "
                        "splits non-empty.")
    val, train = np.sort(order[:num_val]), np.sort(order[num_val:])
    return train_images[train], train_images[val]


def read_split(source) -> dict[str, np.ndarray]:
    """All examples of one TFDS data source, stacked and sorted by `id`."""
    columns: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(source), _READ_CHUNK):
        rows = source.__getitems__(range(start, min(start + _READ_CHUNK, len(source))))
        for key in rows[0]:
            columns.setdefault(key, []).append(np.stack([row[key] for row in rows]))
    stacked = {key: np.concatenate(parts) for key, parts in columns.items()}
    order = np.argsort(stacked["id"], kind="stable")
    return {key: value[order] for key, value in stacked.items()}


def _expected_sizes(builder) -> dict[str, int] | None:
    splits = getattr(builder, "_splits", None)
    return None if splits is None else {name: len(items) for name, items in splits.items()}


def _readable(builder) -> bool:
    """Whether a prepared dataset reads back whole: every split's size as listed, first and
    last examples decodable."""
    try:
        source = builder.as_data_source()
        expected = _expected_sizes(builder)
        for split, data in source.items():
            if expected is not None and len(data) != expected.get(split):
                return False
            if len(data):
                data.__getitems__([0, len(data) - 1])
        return expected is None or set(expected) <= set(source)
    except Exception:  # any failure to read means: not a complete dataset
        return False


def prepare(config):
    """The config's builder, prepared once. TFDS writes into an `incomplete.*` folder and
    renames it when done; a prepared folder that does not read back whole (a copy cut short,
    a deleted shard) is deleted and rebuilt."""
    builder = create_builder(config)
    if builder.data_path.exists() and not _readable(builder):
        print(f"Prepared data in {builder.data_path} is incomplete; rebuilding it.", flush=True)
        shutil.rmtree(builder.data_path)
        builder = create_builder(config)
    builder.download_and_prepare()
    return builder


def load(config) -> Data:
    """Prepares (once) and reads the dataset named by the config."""
    builder = prepare(config)
    source = builder.as_data_source()
    train, test = read_split(source["train"]), read_split(source["test"])
    train_images, val_images = split_validation(train["image"], config.val_fraction,
                                                config.seed)
    return Data(train_images=train_images, val_images=val_images, test_images=test["image"],
                test_labels=test["label"].astype(np.int32), test_masks=test.get("mask"),
                path=str(builder.data_path))
