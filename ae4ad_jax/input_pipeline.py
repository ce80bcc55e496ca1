"""From a config to arrays: prepare the TFDS dataset once, read it, convert on device.

Splits are read into host memory as uint8 arrays in their stored order
(sorted by `id`); training keeps them uint8 in device memory and converts each
batch to float there (`to_float`), so host memory and transfers stay 4x smaller.
"""

import dataclasses
import os

import jax.numpy as jnp
import numpy as np

from ae4ad_jax.errors import UserError

_READ_CHUNK = 1024

# Names of the benchmark datasets whose builders are not part of the package yet.
PENDING_DATASETS = {
    "brats": "BraTS2021", "rsna": "RSNA", "vin": "VinDr-CXR", "brain": "Brain Tumor",
    "lag": "LAG", "isic": "ISIC2018", "c16": "Camelyon16",
}
DATASETS = ("phantom",) + tuple(PENDING_DATASETS)


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset in host memory. Images uint8 [N, H, W, C]; masks uint8 {0,1} [N, H, W]."""

    train_images: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    test_masks: np.ndarray | None

    @property
    def channels(self) -> int:
        return self.train_images.shape[-1]


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise UserError(f"Unknown dataset {name!r}: known datasets are {', '.join(DATASETS)}.")
    if name in PENDING_DATASETS:
        raise UserError(
            f"Dataset {name!r} ({PENDING_DATASETS[name]}) needs the real-data builders, which "
            "are not implemented in this version of ae4ad-jax (see README, 'Real data'). "
            "Run with --config.dataset=phantom meanwhile.")


def create_builder(config):
    """The TFDS builder for `config.dataset` (nothing is prepared yet)."""
    from ae4ad_jax.datasets import builders  # tensorflow_datasets is slow to import

    check_dataset_name(config.dataset)
    p = config.phantom
    builder_config = builders.phantom_config(config.image_size, p.num_train,
                                             p.num_test_normal, p.num_test_abnormal, p.seed)
    return builders.Phantom(data_dir=os.path.expanduser(config.tfds_dir),
                            config=builder_config, file_format="array_record")


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


def load(config) -> Data:
    """Prepares (once) and reads the dataset named by the config."""
    builder = create_builder(config)
    builder.download_and_prepare()
    source = builder.as_data_source()
    train, test = read_split(source["train"]), read_split(source["test"])
    return Data(train_images=train["image"], test_images=test["image"],
                test_labels=test["label"].astype(np.int32), test_masks=test.get("mask"))


def to_float(images):
    """uint8 [0, 255] -> float32 [-1, 1], as the reference's ToTensor + Normalize(0.5, 0.5)."""
    return (images.astype(jnp.float32) / 255.0 - 0.5) / 0.5
