"""Every method by name: the method modules (`methods/<module>.py`), each holding its
methods in `METHODS`, a tuple of `Method`s that carry their names. Adding a method is one
module and one line here (docs/extending.md).

From the registry and the methods' declarations come the config's method groups and
their defaults, the checks of a config's method settings, and the bound `Method` a run
uses (`create`).
"""

import dataclasses
import functools
import importlib

from ae4ad_jax.core import logs, settings
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.methods.contract import Common, Method
from ae4ad_jax.nets.autoencoder import Architecture
from ae4ad_jax.nets.rate import Rate
from ae4ad_jax.parallel import execution

MODULES = ("autoencoder", "ssim", "perceptual", "vae", "constrained", "memae", "ceae", "aeu",
           "ganomaly", "dae")


def collect(modules) -> dict:
    """{name: unbound Method} of the methods the modules hold, in their order; two methods
    of one name are an error."""
    found = {}
    for module in modules:
        for method in importlib.import_module(f"ae4ad_jax.methods.{module}").METHODS:
            if method.name in found:
                raise ValueError(f"Two methods are named {method.name!r} (the second in "
                                 f"methods/{module}.py).")
            found[method.name] = method
    return found


METHODS = collect(MODULES)
NAMES = tuple(METHODS)
TABLE2 = ("ae", "vae", "memae", "ceae")  # the paper's Table 2


def get(name: str) -> Method:
    """The unbound method `name`."""
    if name not in METHODS:
        raise UserError(f"Unknown method {name!r}: known methods are {', '.join(NAMES)}.")
    return METHODS[name]


def groups() -> dict:
    """{config group: its declaration} of every method's own settings."""
    found = {}
    for name in NAMES:
        method = get(name)
        if method.group is not None:
            found[method.group] = method.settings_type
    return found


def rate_methods() -> tuple:
    """The methods whose plain code the learned rate can quantise."""
    return tuple(name for name in NAMES if get(name).plain_code)


def _declared() -> dict:
    """{config group: declaration}: the architecture (`model`), the learned rate (`rate`)
    and every method's own group."""
    return {"model": Architecture, "rate": Rate, **groups()}


def config_groups() -> dict:
    """The config's declared groups with their defaults, {name: {key: default}}."""
    return {group: settings.defaults(declaration) for group, declaration in
            _declared().items()}


def override_defaults() -> dict:
    """{method: {top-level key: value}}: what each method runs with by default."""
    return {name: dict(get(name).overrides) for name in NAMES if get(name).overrides}


def check_config(config) -> None:
    """The declared groups' values, the methods named, and each named method's own checks;
    raises UserError naming the first bad key."""
    for name in (config.method,) + tuple(config.methods):
        get(name)
    unknown = [name for name in config.method_overrides if name not in METHODS]
    if unknown:
        raise UserError(f"Config key method_overrides names unknown methods {unknown}.")
    for group, declaration in _declared().items():
        settings.check(declaration, config[group], group)
    for name in (config.method,) + tuple(config.methods):
        method = get(name)
        if not method.has_latent and (config.latent_sizes or config.entropy_weights
                                      or config.entropy_weight != 0):
            raise UserError(f"Method {name} has no latent code: leave latent_sizes, "
                            "entropy_weight and entropy_weights unset (its ensembles are "
                            "over seeds).")
        if config.rate.enabled and not method.plain_code:
            raise UserError(f"Method {name} has no plain latent code to quantise: "
                            f"rate.enabled works with {', '.join(rate_methods())}.")
        if method.check is not None:
            single = config.copy_and_resolve_references()
            single.method = name
            method.check(create(single), single)


def resolve_config(config):
    """The config a run of `config.method` uses: its `method_overrides` applied (a copy)."""
    overrides = dict(config.method_overrides.get(config.method, {}))
    if not overrides:
        return config
    resolved = config.copy_and_resolve_references()
    changed = []
    for key, value in overrides.items():
        if key not in resolved:
            raise UserError(f"Config key method_overrides.{config.method}.{key} names no "
                            "top-level config key.")
        if resolved[key] != value:
            changed.append(f"{key} {resolved[key]!r} -> {value!r}")
        resolved[key] = value
    if changed:
        logs.log(f"Method {config.method} runs with the reference's " + ", ".join(changed)
                 + f" (config key method_overrides.{config.method}).")
    return resolved


def common_settings(config) -> Common:
    if config.channels not in (1, 3):
        raise ValueError(f"config.channels is {config.channels!r}: a run's config has 1 or 3 "
                         "(0, the dataset's, is resolved by data.pipeline.resolve_channels).")
    rate = settings.from_config(Rate, config.rate)
    return Common(channels=config.channels, image_size=config.image_size,
                  dataset=config.dataset,
                  architecture=settings.from_config(Architecture, config.model),
                  kernels=execution.model_kernels(config),
                  rate=rate if rate.enabled else None)


@functools.lru_cache(maxsize=64)
def _bound(name: str, own, common: Common) -> Method:
    return dataclasses.replace(get(name), settings=own, common=common)


def create(config) -> Method:
    """The configured method with its settings (one object per settings: compiled once)."""
    method = get(config.method)
    own = (settings.from_config(method.settings_type, config[method.group])
           if method.group else None)
    return _bound(config.method, own, common_settings(config))
