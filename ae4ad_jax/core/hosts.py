"""The processes of a multi-process run waiting for each other."""

import jax


def barrier(name: str) -> None:
    """Waits until every process reaches this point (nothing to wait for on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
