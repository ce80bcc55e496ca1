"""TFDS builders (TensorFlow-free: Tensor features, array_record files).

Every builder yields examples with the same keys: `id` (position in its
split, so reading back restores the generation order), `image` (uint8
[H, W, C]), `label` (0 normal, 1 abnormal) and, where the dataset has pixel
annotations, `mask` (uint8 {0, 1} [H, W]).
"""

import dataclasses
import hashlib
import multiprocessing
import os

import numpy as np
import tensorflow_datasets as tfds

from ae4ad_jax.core import progress
from ae4ad_jax.data import phantom, real


def example_features(image_size: int, channels: int, with_mask: bool):
    features = {
        "id": tfds.features.Tensor(shape=(), dtype=np.int64),
        "image": tfds.features.Tensor(shape=(image_size, image_size, channels), dtype=np.uint8),
        "label": tfds.features.Tensor(shape=(), dtype=np.int64),
    }
    if with_mask:
        features["mask"] = tfds.features.Tensor(shape=(image_size, image_size), dtype=np.uint8)
    return tfds.features.FeaturesDict(features)


@dataclasses.dataclass
class PhantomConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    num_train: int = 3000
    num_test_normal: int = 500
    num_test_abnormal: int = 500
    seed: int = 0


def phantom_config(image_size, num_train, num_test_normal, num_test_abnormal, seed):
    name = f"s{image_size}_n{num_train}_{num_test_normal}_{num_test_abnormal}_seed{seed}"
    return PhantomConfig(name=name, image_size=image_size, num_train=num_train,
                         num_test_normal=num_test_normal,
                         num_test_abnormal=num_test_abnormal, seed=seed)


class Phantom(tfds.core.GeneratorBasedBuilder):
    """The embedded procedural brain-slice dataset (see `data/phantom.py`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=phantom.__doc__,
            features=example_features(self.builder_config.image_size, 1, with_mask=True))

    def _split_generators(self, dl_manager):
        del dl_manager
        cfg = self.builder_config
        seeds = np.random.SeedSequence(cfg.seed).generate_state(3)
        return {
            "train": self._generate_examples([(cfg.num_train, seeds[0], False)], "train"),
            "test": self._generate_examples([(cfg.num_test_normal, seeds[1], False),
                                             (cfg.num_test_abnormal, seeds[2], True)], "test"),
        }

    def _generate_examples(self, parts, split):
        index = 0
        with progress.bar(sum(part[0] for part in parts), f"preparing phantom {split}",
                          "images") as bar:
            for num, seed, abnormal in parts:
                images, masks = phantom.generate(num, self.builder_config.image_size,
                                                 int(seed), abnormal)
                for image, mask in zip(images, masks, strict=True):
                    yield index, {"id": index, "image": image, "label": int(abnormal),
                                  "mask": mask}
                    index += 1
                    bar.update()


# ----------------------------------------------------------------------------- real data

_PARALLEL_MIN_ITEMS = 256  # below this, decoding in-process beats starting workers
_CHUNK = 32


def _decode_job(job):
    index, item, image_size, channels, with_mask, limits = job
    image, mask = real.decode(item, image_size, channels, with_mask, limits)
    return index, item, image, mask


@dataclasses.dataclass
class RealConfig(tfds.core.BuilderConfig):
    dataset: str = ""
    image_size: int = 64
    channels: int = 1
    has_masks: bool = False


def real_config(dataset, image_size, channels, root, splits, has_masks):
    """A config whose name changes with the raw folder and its listing, so a prepared
    dataset is never reused for other files."""
    digest = hashlib.sha256(os.path.abspath(root).encode())
    for split in sorted(splits):
        for item in splits[split]:
            digest.update(f"{split}|{item.image}|{item.label}|{item.mask}\n".encode())
    name = (f"{dataset}_s{image_size}_c{channels}{'_masks' if has_masks else ''}_"
            f"{digest.hexdigest()[:12]}")
    return RealConfig(name=name, dataset=dataset, image_size=image_size, channels=channels,
                      has_masks=has_masks)


class MedicalImages(tfds.core.GeneratorBasedBuilder):
    """A real dataset (see `data/real.py`), decoded in parallel across cores."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, splits, limits, **kwargs):
        self._splits, self._limits = splits, limits
        super().__init__(**kwargs)

    def _info(self):
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self, description=f"{cfg.dataset} preprocessed as the reference does.",
            features=example_features(cfg.image_size, cfg.channels, cfg.has_masks))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(items, split)
                for split, items in self._splits.items()}

    def _generate_examples(self, items, split):
        cfg = self.builder_config
        jobs = [(i, item, cfg.image_size, cfg.channels, cfg.has_masks, self._limits)
                for i, item in enumerate(items)]
        workers = min(os.cpu_count() or 1, 16)
        if len(jobs) < _PARALLEL_MIN_ITEMS or workers == 1:
            results = map(_decode_job, jobs)
            yield from self._examples(results, len(jobs), split)
            return
        # spawn, not fork: the parent may already run JAX's threads.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            yield from self._examples(pool.imap(_decode_job, jobs, chunksize=_CHUNK),
                                      len(jobs), split)

    def _examples(self, results, total, split):
        label = f"preparing {self.builder_config.dataset} {split}"
        with progress.bar(total, label, "images") as bar:
            for index, item, image, mask in results:
                example = {"id": index, "image": image, "label": item.label}
                if mask is not None:
                    example["mask"] = mask
                yield index, example
                bar.update()
