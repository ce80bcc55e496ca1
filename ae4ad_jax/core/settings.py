"""Declared settings: one dataclass field per setting, with the rule its values follow.

A group of settings (a method's hyperparameters, the network's architecture, the
learned rate) is a frozen dataclass whose fields are made by `setting`. From that
one declaration come the config group's defaults (`defaults`), the check of a
config's values (`check`) and the typed, hashable object the code reads
(`from_config`), so no value or rule is written twice.
"""

import dataclasses
import math

from ae4ad_jax.core.errors import UserError


def setting(default, help: str, *, low=None, high=None, choices=None, odd=False):
    """A field with its default, its meaning, and its rule: numbers (and a tuple's items)
    within [low, high], one of `choices`, odd integers."""
    rule = {"help": help, "low": low, "high": high, "choices": choices, "odd": odd}
    return dataclasses.field(default=default, metadata=rule)


def defaults(group) -> dict:
    """{name: default} of a declared group (a dataclass type)."""
    return {field.name: field.default for field in dataclasses.fields(group)}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _problem(field, value):
    """What is wrong with `value` for `field` (a sentence fragment), or None."""
    rule, default = field.metadata, field.default
    low, high = rule["low"], rule["high"]
    if rule["choices"] is not None:
        return None if value in rule["choices"] else f"must be one of {rule['choices']}"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be True or False"
    if isinstance(default, int):
        if low == 1 and high is None:
            wanted = "a positive integer"
        elif high is None:
            wanted = f"an integer >= {low}"
        else:
            wanted = f"an integer in [{low}, {high}]"
        ok = _is_int(value) and (low is None or value >= low) and (high is None or
                                                                     value <= high)
        if ok and rule["odd"] and value % 2 == 0:
            return "must be odd"
        return None if ok else f"must be {wanted}"
    if isinstance(default, float):
        low = -math.inf if low is None else low
        high = math.inf if high is None else high
        ok = _is_number(value) and low <= value <= high
        return None if ok else f"must be a number in [{low}, {high}]"
    if isinstance(default, tuple):
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(
            _is_int(item) and (low is None or item >= low) for item in value)
        return None if ok else "must be a non-empty tuple of positive integers"
    return None if isinstance(value, str) else "must be a string"


def check(group, values, prefix: str) -> None:
    """Raises UserError naming the first key of config group `prefix` that is unknown to
    the declaration `group` or breaks its rule."""
    names = [field.name for field in dataclasses.fields(group)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UserError(f"Config group {prefix} has unknown keys {unknown}; its keys are "
                        f"{', '.join(names)}.")
    for field in dataclasses.fields(group):
        value = values.get(field.name, field.default)
        problem = _problem(field, value)
        if problem:
            raise UserError(f"Config key {prefix}.{field.name} {problem}, got {value!r}.")


def from_config(group, values):
    """The declared group's object from a config group's values (checked first)."""
    converted = {}
    for field in dataclasses.fields(group):
        value = values.get(field.name, field.default)
        kind = type(field.default)
        converted[field.name] = tuple(value) if kind is tuple else (
            kind(value) if kind in (int, float, bool) else value)
    return group(**converted)

