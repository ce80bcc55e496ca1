"""The old name of `python -m ae4ad_jax.export --format=stablehlo`; says so and exits 2."""

from ae4ad_jax.core.errors import renamed_command

if __name__ == "__main__":
    renamed_command("ae4ad_jax.scorer", "ae4ad_jax.export --format=stablehlo")
