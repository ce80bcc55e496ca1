"""The registry: it, the README's method table and the configs name the same methods; a
method's declared settings become config defaults and checks; and a new method is one
module and one registry line."""

import dataclasses
import os
import re
import sys
import types

import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import parts, registry
from ae4ad_jax.methods.contract import Method

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _readme_methods():
    """The first column of the README's method table (headed `| method | what it changes`)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("| method | what it changes"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(re.match(r"^\| `([a-z0-9-]+)` \|", line).group(1))
    return rows


def test_registry_readme_and_configs_name_the_same_methods():
    from configs import benchmark, default

    assert _readme_methods() == list(registry.NAMES)
    assert benchmark.get_config("brats,family").methods == registry.NAMES
    assert set(benchmark.get_config("brats,table2").methods) <= set(registry.NAMES)
    config = default.get_config()
    # The reference's values (README's method table), not what the declarations say.
    assert config.vae.kl_weight == 0.005 and config.ssim.to_dict() == {"window": 11,
                                                                      "sigma": 1.5}
    assert config.memae.to_dict() == {"slots": 25, "shrink_threshold": 0.0025,
                                      "entropy_weight": 0.0002}
    assert (config.ceae.erase_fraction, config.ceae.fill_value) == (0.024, -1.0)
    assert config.ganomaly.to_dict() == {"adversarial_weight": 1.0, "reconstruction_weight":
                                         50.0, "encoding_weight": 1.0}
    assert (config.dae.noise_resolution, config.dae.noise_std) == (16, 0.2)
    assert (config.model.base_width, config.model.hidden_width) == (16, 1024)
    assert config.method_overrides.to_dict() == {"dae": {"image_size": 128, "batch_size": 16}}


def test_method_names_are_unique_and_settings_explained():
    with pytest.raises(ValueError, match="Two methods are named 'ae'"):
        registry.collect(("autoencoder", "autoencoder"))
    for name, method in registry.METHODS.items():
        assert (method.group is None) == (method.settings_type is None), name
        if method.settings_type is not None:
            for field in dataclasses.fields(method.settings_type):
                assert field.metadata["help"], (name, field.name)


@dataclasses.dataclass(frozen=True)
class ToySettings:
    weight: float = setting(0.5, "how much of the L1 error the loss adds", low=0.0)


def _toy_loss(method, outputs, images, latent_mask):
    rows, _ = parts.mse_loss(method, outputs, images, latent_mask)
    l1 = abs(outputs["recon"] - images).mean(axis=(1, 2, 3))
    return rows + method.settings.weight * l1, {"l1": l1}


@pytest.fixture
def toy_method(monkeypatch):
    """A method added as docs/extending.md says: a module, and one registry line."""
    module = types.ModuleType("ae4ad_jax.methods.toy")
    module.METHODS = (Method("toy", model=parts.autoencoder, loss=_toy_loss,
                             error_map=parts.squared_error, group="toy",
                             settings_type=ToySettings),)
    monkeypatch.setitem(sys.modules, "ae4ad_jax.methods.toy", module)
    monkeypatch.setattr(registry, "METHODS", registry.collect(registry.MODULES + ("toy",)))
    monkeypatch.setattr(registry, "NAMES", tuple(registry.METHODS))


def test_a_new_method_gets_its_config_group_checks_and_settings(toy_method):
    from configs import default

    config = default.get_config()

    config.channels = 1  # phantom's (a run resolves 0 from its dataset)
    assert config.toy.weight == 0.5  # the default config takes the declared group
    config.method, config.toy.weight = "toy", 0.25
    method = registry.create(config)
    assert method.settings == ToySettings(weight=0.25) and method.name == "toy"
    registry.check_config(config)
    config.toy.weight = -1.0
    with pytest.raises(UserError, match=r"Config key toy.weight must be a number >= 0.0, "
                                        r"got -1.0"):
        registry.check_config(config)


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(UserError, match=r"Unknown method 'gan': known methods are ae, ae-l1"):
        registry.get("gan")
