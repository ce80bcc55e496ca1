"""Where JAX's persistent compilation cache goes: the config's folder, JAX's own setting,
or the user's cache folder; "" turns it off."""

import jax

from ae4ad_jax.parallel import execution


def test_the_cache_folder_follows_the_config_then_jax_then_the_user_cache():
    environ = {"XDG_CACHE_HOME": "/cache"}
    assert execution.cache_folder("", environ) == ""
    assert execution.cache_folder("/data/jax", environ) == "/data/jax"
    before = jax.config.jax_compilation_cache_dir  # the test run's own cache
    try:
        jax.config.update("jax_compilation_cache_dir", "/from/jax")
        assert execution.cache_folder("auto", environ) == "/from/jax"
        jax.config.update("jax_compilation_cache_dir", None)
        assert execution.cache_folder("auto", environ) == "/cache/ae4ad-jax/jax"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
