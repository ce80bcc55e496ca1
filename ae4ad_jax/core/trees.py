"""Pytree helpers that several layers share."""


def path_names(path) -> list[str]:
    """The names along a pytree path of dicts (Flax's parameter and variable trees)."""
    return [str(getattr(key, "key", "")) for key in path]
