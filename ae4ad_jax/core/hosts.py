"""The processes of a multi-process run: which one writes, what they share, waiting for
each other. On one process each is a no-op."""

import jax
import numpy as np
from jax.experimental import multihost_utils


def barrier(name: str) -> None:
    """Waits until every process reaches this point (nothing to wait for on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def is_primary() -> bool:
    """Process 0 writes logs, metrics, checkpoints' metadata and reports."""
    return jax.process_index() == 0


def broadcast_text(text: str, limit: int = 4096) -> str:
    """Process 0's `text` (its first `limit` bytes) on every process."""
    if jax.process_count() == 1:
        return text
    data = np.zeros(limit, np.uint8)
    encoded = text.encode()[:limit]
    data[:len(encoded)] = np.frombuffer(encoded, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return received.tobytes().rstrip(b"\0").decode(errors="replace")
