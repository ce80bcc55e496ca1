"""Declared settings: defaults, rules and typed values from one declaration."""

import dataclasses

import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import check, defaults, from_config, setting


@dataclasses.dataclass(frozen=True)
class Knobs:
    slots: int = setting(25, "memory slots", low=1)
    window: int = setting(11, "an odd window", low=1, odd=True)
    weight: float = setting(0.5, "a weight", low=0.0, high=1.0)
    kind: str = setting("a", "a choice", choices=("a", "b"))
    on: bool = setting(False, "a switch")
    widths: tuple = setting((3, 3), "positive widths", low=1)


def test_defaults_and_typed_values_come_from_the_declaration():
    assert defaults(Knobs) == {"slots": 25, "window": 11, "weight": 0.5, "kind": "a",
                               "on": False, "widths": (3, 3)}
    values = {**defaults(Knobs), "weight": 1, "widths": [4, 5]}  # as JSON gives them back
    check(Knobs, values, "knobs")
    knobs = from_config(Knobs, values)
    assert knobs == Knobs(weight=1.0, widths=(4, 5)) and isinstance(knobs.weight, float)
    assert hash(knobs) == hash(Knobs(weight=1.0, widths=(4, 5)))  # a static jit argument


@pytest.mark.parametrize("key, value, words", [
    ("slots", 0, "knobs.slots must be a positive integer, got 0"),
    ("slots", True, "knobs.slots must be a positive integer, got True"),
    ("window", 10, "knobs.window must be odd, got 10"),
    ("weight", 1.5, r"knobs.weight must be a number in \[0.0, 1.0\], got 1.5"),
    ("weight", float("nan"), r"knobs.weight must be a number in \[0.0, 1.0\], got nan"),
    ("kind", "c", r"knobs.kind must be one of \('a', 'b'\), got 'c'"),
    ("on", "yes", "knobs.on must be True or False, got 'yes'"),
    ("widths", (3, 0), r"knobs.widths must be a non-empty tuple, each item a positive integer"),
    ("extra", 1, r"Config group knobs has unknown keys \['extra'\]; its keys are slots, "),
])
def test_every_rule_names_the_key_and_the_value(key, value, words):
    with pytest.raises(UserError, match=words):
        check(Knobs, {**defaults(Knobs), key: value}, "knobs")
