"""The suite's warning filters (pyproject.toml) are in force: a deprecation raised by JAX,
attributed to our code or to JAX itself, is an error."""

import warnings

import pytest


def test_a_jax_deprecation_fails_the_suite():
    import jax

    with pytest.raises(DeprecationWarning, match="DropVar"):
        jax.core.DropVar  # noqa: B018  (deprecated in 0.10, removed in 0.11: reading it warns)


@pytest.mark.parametrize("module", ["ae4ad_jax.training.loop", "flax.linen", "jax._src.api",
                                    "orbax.checkpoint", "optax"])
def test_deprecations_from_our_code_and_the_four_libraries_are_errors(module):
    for category in (DeprecationWarning, FutureWarning):
        with pytest.raises(category):
            warnings.warn_explicit("old", category, "file.py", 1, module=module)
    with pytest.warns(DeprecationWarning):  # another library's: a warning, not an error
        warnings.warn_explicit("old", DeprecationWarning, "file.py", 1, module="absl.flags")
