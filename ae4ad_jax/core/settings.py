"""Declared settings: one dataclass field per setting, with the rule its values follow.

A group of settings (the run's top-level keys, a method's hyperparameters, the
network's architecture, the learned rate, the execution plan) is a frozen dataclass
whose fields are made by `setting`. From that one declaration come the config
group's defaults (`defaults`), the check of a config's values (`check`) and the
typed, hashable object the code reads (`from_config`), so no value or rule is
written twice. Rules that tie several keys together are written beside the
declaration that owns them, as functions (`config/checks.py`).
"""

import dataclasses
import math

from ae4ad_jax.core.errors import UserError


def setting(default, help: str, *, low=None, high=None, above=None, below=None,
            choices=None, odd=False, multiple_of=None, item=None, distinct=False):
    """A field with its default, its meaning, and its rule:

    - numbers (and a tuple's items) within [low, high] and (above, below);
    - one of `choices` (for a tuple: each item);
    - odd integers, multiples of `multiple_of`;
    - a tuple's items of type `item` (int, float or str; default: the type of the default's
      first item, else int), `distinct` items; a non-empty default means non-empty.
    """
    if isinstance(default, tuple) and item is None:
        item = type(default[0]) if default else int
    rule = {"help": help, "low": low, "high": high, "above": above, "below": below,
            "choices": choices, "odd": odd, "multiple_of": multiple_of, "item": item,
            "distinct": distinct}
    return dataclasses.field(default=default, metadata=rule)


def defaults(group) -> dict:
    """{name: default} of a declared group (a dataclass type)."""
    return {field.name: field.default for field in dataclasses.fields(group)}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _range(rule) -> str:
    """The rule's bounds in words: `>= 1`, `in [0, 1)`, `> 0`, or ""."""
    low = rule["low"] if rule["low"] is not None else rule["above"]
    high = rule["high"] if rule["high"] is not None else rule["below"]
    if low is not None and high is not None:
        return (f"in {'[' if rule['above'] is None else '('}{low}, "
                f"{high}{']' if rule['below'] is None else ')'}")
    if low is not None:
        return f"{'>=' if rule['above'] is None else '>'} {low}"
    if high is not None:
        return f"{'<=' if rule['below'] is None else '<'} {high}"
    return ""


def _in_range(value, rule) -> bool:
    return ((rule["low"] is None or value >= rule["low"])
            and (rule["high"] is None or value <= rule["high"])
            and (rule["above"] is None or value > rule["above"])
            and (rule["below"] is None or value < rule["below"]))


def _scalar_problem(value, kind, rule):
    """What is wrong with one value of type `kind` under `rule` (a phrase), or None."""
    if rule["choices"] is not None:
        return None if value in rule["choices"] else f"one of {rule['choices']}"
    bounds = _range(rule)
    if kind is bool:
        return None if isinstance(value, bool) else "True or False"
    if kind is int:
        if rule["low"] == 1 and not any(rule[k] is not None for k in ("high", "above",
                                                                      "below")):
            wanted = "a positive integer"
        else:
            wanted = f"an integer {bounds}".rstrip()
        if not (_is_int(value) and _in_range(value, rule)):
            return wanted
        if rule["odd"] and value % 2 == 0:
            return "odd"
        if rule["multiple_of"] and value % rule["multiple_of"]:
            return f"a multiple of {rule['multiple_of']}"
        return None
    if kind is float:
        ok = _is_number(value) and _in_range(value, rule)
        return None if ok else f"a number {bounds}".rstrip()
    return None if isinstance(value, str) else "a string"


def _problem(field, value):
    """What is wrong with `value` for `field` (a sentence fragment), or None."""
    rule, default = field.metadata, field.default
    if not isinstance(default, tuple):
        problem = _scalar_problem(value, type(default), rule)
        return None if problem is None else f"must be {problem}"
    kind = rule["item"]
    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or (default and not items):
        return f"must be a {'non-empty ' if default else ''}tuple"
    for entry in items:
        problem = _scalar_problem(entry, kind, rule)
        if problem is not None:
            return f"must be a {'non-empty ' if default else ''}tuple, each item {problem}"
    if rule["distinct"] and len(set(items)) != len(items):
        return "must hold distinct values"
    return None


def check(group, values, prefix: str = "", *, others_allowed: bool = False) -> None:
    """Raises UserError naming the first key of config group `prefix` ("" for the top
    level) that breaks its declared rule, or that `group` does not declare (unless
    `others_allowed`: a group declared in parts)."""
    names = [field.name for field in dataclasses.fields(group)]
    unknown = sorted(set(values) - set(names))
    if unknown and not others_allowed:
        raise UserError(f"Config group {prefix} has unknown keys {unknown}; its keys are "
                        f"{', '.join(names)}.")
    for field in dataclasses.fields(group):
        value = values.get(field.name, field.default)
        problem = _problem(field, value)
        if problem:
            key = f"{prefix}.{field.name}" if prefix else field.name
            raise UserError(f"Config key {key} {problem}, got {value!r}.")


def from_config(group, values):
    """The declared group's object from a config group's values (checked first)."""
    converted = {}
    for field in dataclasses.fields(group):
        value = values.get(field.name, field.default)
        kind = type(field.default)
        converted[field.name] = tuple(value) if kind is tuple else (
            kind(value) if kind in (int, float, bool) else value)
    return group(**converted)
