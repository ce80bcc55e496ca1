"""Datasets: TFDS builders and the registry that maps config names to them."""
