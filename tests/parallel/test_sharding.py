"""Layouts compute the same run: 8 devices (mesh and pmap), a (4, 2) ensemble mesh, every
method's mixed-size ensemble on a (2, 4) mesh against its standalone models, two
processes, and checkpoints moved between device counts; plus the layout and launcher
checks.

Multi-device runs need XLA_FLAGS set before JAX starts: one subprocess with 8 devices
runs every such case (tests/parallel/multidevice_run.py), and one pair of processes the
multi-process run; both have bounded time-outs.
"""

import os
import signal
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from ae4ad_jax import main
from ae4ad_jax.core.errors import UserError, exit_on_user_error
from ae4ad_jax.parallel import distributed, mesh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 900
# The methods whose mechanisms differ (per-row sampling and corruption, batch-level noise,
# re-encoding, a second network, a memory, a convolutional code, a second output, a
# quantised code with a learned rate: "ae+rate"); the others change only per-row loss,
# map and score functions (AE-Grad's gradient scores are per row).
FAMILY = ("vae", "ceae", "dae", "constrained-ae", "ganomaly", "memae", "ae-spatial", "aeu",
          "ae+rate")


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={devices}")
    return env


# ----------------------------------------------------------------------------- in-process


def _assert_leaves_close(a, b, where, whole=1e-4, leaf=1e-3):
    """Parameters and BatchNorm statistics: all of them together within `whole` in norm,
    and each leaf within `leaf` of its own norm. A wrong reduction moves every leaf; a
    ReLU input within rounding of zero, flipped in one layout and not in the other, moves
    the few leaves it feeds."""
    keys = sorted(key for key in a if key.startswith("leaf"))
    assert len(keys) > 10
    for key in keys:
        assert b[key].shape == a[key].shape, f"{where}: {key} shape"
        error = np.linalg.norm(b[key] - a[key]) / (np.linalg.norm(a[key]) + 1e-12)
        assert error < leaf, f"{where}: {key} differs by {error:.2e} of its norm"
    x, y = (np.concatenate([d[key].ravel() for key in keys]) for d in (a, b))
    error = np.linalg.norm(y - x) / np.linalg.norm(x)
    assert error < whole, f"{where}: the parameters differ by {error:.2e} of their norm"


LAYOUTS = (("single", "mesh"), ("single", "pmap"), ("ensemble_single", "ensemble_mesh"),
           ("single", "mesh_to_single"), ("single", "single_to_mesh"))


def _layouts_agree(out, reference, other):
    a, b = (dict(np.load(out / f"{name}.npz")) for name in (reference, other))
    assert a["losses"].shape[1] == 10  # 2 epochs of 5 steps, the last one partial
    steps = slice(5, None) if "_to_" in other else slice(None)  # resumed: epoch 2
    np.testing.assert_allclose(b["losses"][:, steps], a["losses"][:, steps], rtol=1e-4,
                               atol=1e-6, err_msg=f"{other}: losses")
    np.testing.assert_allclose(b["score"], a["score"], rtol=2e-6, atol=1e-6,
                               err_msg=f"{other}: scores")
    # single_to_mesh starts epoch 2 from a state where one ReLU input lies within rounding
    # of zero: the two layouts round it to different sides, and the first BatchNorm biases
    # (values ~1e-3) move by 1.1e-2 of their norm, all parameters by 3.3e-5 (measured on
    # 2026-12-04); perturbing that state by 1e-6 brings them back to 2e-8. Other layouts
    # agree to 3e-6 per leaf.
    _assert_leaves_close(a, b, other, whole=1e-4, leaf=3e-2)


def _method_agrees(out, name):
    """The padded member (d = 2 of an ensemble of width 4) on the (2, 4) mesh against the
    standalone model of d = 2 on one device."""
    alone = dict(np.load(out / f"{name}_alone.npz"))
    mesh = dict(np.load(out / f"{name}_mesh.npz"))
    assert alone["losses"].shape == (6,)  # 2 epochs of 3 steps, the last partial
    np.testing.assert_allclose(mesh["losses"], alone["losses"], rtol=1e-4,
                               err_msg=f"{name}: losses")
    np.testing.assert_allclose(mesh["score"], alone["score"], rtol=1e-4, atol=1e-7,
                               err_msg=f"{name}: scores")
    _assert_leaves_close(alone, mesh, name)


def test_eight_devices_compute_what_one_device_computes(tmp_path):
    """Every multi-device case in one subprocess with 8 CPU devices: layouts and moved
    checkpoints against the one-device run, every method's padded member on a mesh
    against its standalone model, and a batch that does not split refused. One test, so
    that the subprocess runs once whatever the test processes; every failure is listed."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "parallel",
                                                       "multidevice_run.py"), str(tmp_path),
                          *FAMILY], cwd=ROOT, env=_env(8), timeout=TIMEOUT_S,
                         capture_output=True, text=True)
    if run.returncode < 0:  # killed by a signal: a C++ abort leaves no Python traceback
        pytest.fail(f"The 8-device subprocess died from {signal.Signals(-run.returncode).name}"
                    " (docs/scaling.md, 'Forced CPU devices': an abort seen once under 2.5x "
                    "load). Its last output:\n" + run.stderr[-3000:])
    assert run.returncode == 0, run.stderr[-3000:]
    failures = []
    checks = [(f"layout {other}", _layouts_agree, (reference, other))
              for reference, other in LAYOUTS]
    checks += [(f"method {name}", _method_agrees, (name,)) for name in FAMILY]
    for where, check, arguments in checks:
        try:
            check(tmp_path, *arguments)
        except AssertionError as error:
            failures.append(f"{where}: {' '.join(str(error).split())[:400]}")
    assert failures == []
    assert (tmp_path / "refused.txt").read_text() == (
        "The global batch_size=12 does not divide across the data axis of 8 devices "
        "(mesh_shape=(1, 8)); choose a batch size that is a multiple of 8.")


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize("members, devices, batch, expected", [
    (1, 8, 64, (1, 8)), (24, 8, 64, (8, 1)), (8, 8, 64, (8, 1)), (12, 8, 64, (4, 2)),
    (3, 8, 64, (1, 8)), (1, 8, 4, None), (1, 1, 64, (1, 1))])
def test_mesh_shape_is_chosen_from_members_devices_and_batch(members, devices, batch,
                                                              expected):
    assert mesh.choose_mesh_shape(members, devices, batch) == expected


@pytest.mark.parametrize("shape, members, batch, words", [
    ((4, 2), 8, 33, "does not divide across the data axis"),
    ((3, 1), 8, 32, "must divide the member count"),
    ((4, 4), 16, 32, "needs 16 devices"),
    ((8,), 8, 32, "(members, data)")])
def test_bad_mesh_shapes_are_refused(shape, members, batch, words):
    with pytest.raises(UserError) as error:
        mesh.check_mesh_shape(shape, 8, members, batch)
    assert words in str(error.value)


def _settings(**values):
    settings = ml_collections.ConfigDict(dict(
        initialize="auto", coordinator_address="", num_processes=0, process_id=-1,
        initialization_timeout_s=300))
    settings.update(values)
    return settings


@pytest.mark.parametrize("settings, environ, expected", [
    (_settings(), {}, None),
    (_settings(initialize="no"), {"SLURM_NTASKS": "4", "SLURM_PROCID": "1"}, None),
    (_settings(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3), {},
     ("explicit", "10.0.0.1:1234", 4, 3)),
    (_settings(), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2",
                   "JAX_PROCESS_ID": "0"}, ("explicit", "h:1", 2, 0)),
    (_settings(), {"SLURM_NTASKS": "16", "SLURM_PROCID": "3"}, ("cluster", "SLURM")),
    (_settings(), {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, None),
    (_settings(), {"TPU_WORKER_HOSTNAMES": "a,b,c,d", "TPU_WORKER_ID": "2"},
     ("cluster", "Cloud TPU")),
    (_settings(), {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "0"},
     ("cluster", "Open MPI")),
])
def test_launchers_are_recognised(settings, environ, expected):
    assert distributed.resolve(settings, environ) == expected


@pytest.mark.parametrize("settings, environ, words", [
    (_settings(coordinator_address="h:1"), {}, "distributed.num_processes"),
    (_settings(num_processes=2, process_id=5, coordinator_address="h:1"), {}, "not in 0 .. 1"),
    (_settings(), {"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES"),
    (_settings(), {"SLURM_NTASKS": "4"}, "SLURM_PROCID"),
    (_settings(), {"TPU_WORKER_HOSTNAMES": "a,b"}, "TPU_WORKER_ID"),
    (_settings(initialize="maybe"), {}, "distributed.initialize"),
])
def test_half_set_launchers_are_refused(settings, environ, words):
    with pytest.raises(UserError) as error:
        distributed.resolve(settings, environ)
    assert words in str(error.value)


def test_a_half_set_launcher_stops_the_command_line_before_compute(test_config, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    test_config.tfds_dir = str(tmp_path / "tfds")
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(main.run, test_config, str(tmp_path / "run"), False)
    assert stopped.value.code == 2
    assert "JAX_NUM_PROCESSES" in capsys.readouterr().err
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "run").exists()
