"""Rows split into equal batches, the last one padded: counts and shapes in one place."""

import jax.numpy as jnp


def num_batches(num_rows: int, batch_size: int) -> int:
    """Batches of `batch_size` that hold `num_rows` rows (the last may be partial)."""
    return -(-num_rows // batch_size)


def split_padded(rows, batch_size: int):
    """[N, ...] -> [num_batches, batch_size, ...], the last batch padded with zeros."""
    count = num_batches(rows.shape[0], batch_size)
    widths = [(0, count * batch_size - rows.shape[0])] + [(0, 0)] * (rows.ndim - 1)
    return jnp.pad(rows, widths).reshape((count, batch_size) + rows.shape[1:])
