"""Files and folders written whole or not at all.

Everything is written under a temporary name beside its target (`NAME.partial`)
and renamed when complete, so a run or a command stopped mid-write never leaves
a file that reads as whole.
"""

import contextlib
import json
import os
import shutil

import numpy as np

PARTIAL = ".partial"


def partial_path(path: str) -> str:
    return path.rstrip("/") + PARTIAL


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def commit(path: str) -> None:
    """Renames `partial_path(path)` to `path` (a file, or a folder onto an empty one)."""
    if os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)
    os.replace(partial_path(path), path)


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields the temporary path to write `path` (a file or a folder) under; it becomes
    `path` when the block ends, and is removed if the block raises."""
    partial = partial_path(path)
    _remove(partial)
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    commit(path)


def write_json(path: str, value) -> None:
    with atomic_path(path) as partial, open(partial, "w") as f:
        json.dump(value, f, indent=2)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as partial, open(partial, "w") as f:
        f.write(text)


def write_npz(path: str, arrays: dict) -> None:
    with atomic_path(path) as partial, open(partial, "wb") as f:
        np.savez(f, **arrays)
