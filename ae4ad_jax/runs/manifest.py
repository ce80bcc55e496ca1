"""A run's manifest (summary.json's `manifest`): what produced its numbers.

Package versions, the source's git commit (and whether the tree had changes),
fingerprints of the prepared dataset (its files, and the arrays the run read
from them), and the devices and processes it ran on. Two runs with equal
manifests and configs ran the same code on the same data.
"""

import hashlib
import importlib.metadata
import os
import platform
import subprocess

import jax
import numpy as np

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections",
            "tensorflow-datasets", "numpy", "scikit-learn")
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHUNK = 1 << 20


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(root: str = SOURCE_ROOT) -> dict:
    """{"commit": 40 hex digits or None (not a git checkout), "dirty": uncommitted changes}."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def fingerprint(folder: str) -> dict:
    """SHA-256 over every file's path relative to `folder` and its bytes, in path order:
    the same for a copy of the folder, different if any byte, name or file differs."""
    digest = hashlib.sha256()
    files, total = 0, 0
    for directory, subdirs, names in os.walk(folder):
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, folder)
            digest.update(relative.encode() + b"\0")
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    total += len(chunk)
            digest.update(b"\0")
            files += 1
    return {"sha256": digest.hexdigest(), "files": files, "bytes": total}


def content_fingerprint(arrays: dict) -> str:
    """SHA-256 over each named array's name, dtype, shape and bytes, in name order: the
    data a run read, independent of how the files encode it (two builds of the same
    dataset write different array_record bytes)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode() + b"\0")
        digest.update(array.tobytes())
    return digest.hexdigest()


def devices() -> dict:
    first = jax.devices()[0]
    return {"platform": first.platform, "kind": first.device_kind,
            "count": jax.device_count(), "local_count": jax.local_device_count(),
            "processes": jax.process_count()}


def create_manifest(data) -> dict:
    """The manifest of a run that read `data` (`data.pipeline.Data`)."""
    arrays = {name: getattr(data, name) for name in ("train_images", "val_images",
                                                     "test_images", "test_labels",
                                                     "test_masks")
              if getattr(data, name) is not None}
    return {"packages": package_versions(), "source": git_state(),
            "dataset": {"path": data.path or None,  # None: arrays given in memory
                        "files": fingerprint(data.path) if data.path else None,
                        "content_sha256": content_fingerprint(arrays)},
            "devices": devices()}
