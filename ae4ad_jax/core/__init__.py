"""Shared basics every layer may use: the user-error type, progress lines, logging, batch
arithmetic, atomic file writes, and declared settings.

May import: nothing from the package (only the standard library, numpy and JAX).
"""
