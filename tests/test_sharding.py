"""Layouts compute the same run: 8 devices (mesh and pmap), a (4, 2) ensemble mesh, two
processes, and checkpoints moved between device counts; plus the layout and launcher
checks.

Multi-device runs need XLA_FLAGS set before JAX starts, so they run in subprocesses
with bounded time-outs.
"""

import json
import os
import socket
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from ae4ad_jax import distributed, sharding, train
from ae4ad_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


# ----------------------------------------------------------------------------- in-process


def test_layouts_and_moved_checkpoints_match_the_one_device_run(tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multidevice_run.py"),
                    str(tmp_path)], cwd=ROOT, env=_env(8), check=True, timeout=TIMEOUT_S,
                   capture_output=True)

    def load(name):
        return dict(np.load(tmp_path / f"{name}.npz"))

    for reference, other in (("single", "mesh"), ("single", "pmap"),
                             ("ensemble_single", "ensemble_mesh"), ("single", "mesh_to_single"),
                             ("single", "single_to_mesh")):
        a, b = load(reference), load(other)
        assert a["losses"].shape[1] == 10  # 2 epochs of 5 steps, the last one partial
        steps = slice(5, None) if "_to_" in other else slice(None)  # resumed: epoch 2
        np.testing.assert_allclose(b["losses"][:, steps], a["losses"][:, steps], rtol=1e-4,
                                   atol=1e-6, err_msg=f"{other}: losses")
        np.testing.assert_allclose(b["score"], a["score"], rtol=2e-6, atol=1e-6,
                                   err_msg=f"{other}: scores")
        leaves = sorted(key for key in a if key.startswith("leaf"))
        assert len(leaves) > 20
        # Parameters and BatchNorm statistics, leaf by leaf in norm: a ReLU input within
        # rounding of zero may flip and move a few single weights, a wrong reduction moves all.
        for key in leaves:
            error = np.linalg.norm(b[key] - a[key]) / (np.linalg.norm(a[key]) + 1e-12)
            assert error < 1e-3, f"{other}: {key} differs by {error:.2e} of its norm"


# ----------------------------------------------------------------------------- command line


def _command(workdir, tfds_dir, epochs, *extra):
    return [sys.executable, "-m", "ae4ad_jax.main", "--config=configs/test.py",
            f"--workdir={workdir}", f"--config.tfds_dir={tfds_dir}",
            f"--config.num_epochs={epochs}", "--config.phantom.num_train=128",
            "--config.phantom.num_test_normal=48", "--config.phantom.num_test_abnormal=48",
            *extra]


def _assert_same_metrics(row, reference):
    assert set(row) == set(reference)
    for key, value in reference.items():
        if isinstance(value, float):
            np.testing.assert_allclose(row[key], value, rtol=1e-3, atol=1e-4, err_msg=key)
        else:
            assert row[key] == value, key


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_two_devices_match_one_process(tmp_path, test_config):
    config = test_config  # the settings of _command, in this process on one device
    config.num_epochs, config.tfds_dir = 1, str(tmp_path / "tfds")
    config.phantom.num_train, config.phantom.num_test_normal = 128, 48
    config.phantom.num_test_abnormal = 48
    reference = train.train_and_evaluate(config, str(tmp_path / "one_process"))["metrics"][0]
    port = _free_port()
    workdir = tmp_path / "two_processes"
    processes = []
    try:
        for process_id in range(2):
            command = _command(workdir, tmp_path / "tfds", 1,
                               f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                               "--config.distributed.num_processes=2",
                               f"--config.distributed.process_id={process_id}",
                               "--config.distributed.initialization_timeout_s=60")
            processes.append(subprocess.Popen(command, cwd=ROOT, env=_env(2),
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        outputs = [p.communicate(timeout=TIMEOUT_S)[0].decode() for p in processes]
    finally:  # never leave a process behind, whatever failed
        for p in processes:
            p.kill()
            p.wait()
    for p, output in zip(processes, outputs, strict=True):
        assert p.returncode == 0, output[-3000:]
    assert "4 device(s)" in outputs[0] and "2 process(es)" in outputs[0]
    assert "final:" not in outputs[1]  # only process 0 reports
    with open(workdir / "summary.json") as f:
        row = json.load(f)["metrics"][0]
    _assert_same_metrics(row, reference)


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize("members, devices, batch, expected", [
    (1, 8, 64, (1, 8)), (24, 8, 64, (8, 1)), (8, 8, 64, (8, 1)), (12, 8, 64, (4, 2)),
    (3, 8, 64, (1, 8)), (1, 8, 4, None), (1, 1, 64, (1, 1))])
def test_mesh_shape_is_chosen_from_members_devices_and_batch(members, devices, batch,
                                                              expected):
    assert sharding.choose_mesh_shape(members, devices, batch) == expected


@pytest.mark.parametrize("shape, members, batch, words", [
    ((4, 2), 8, 33, "does not divide across the data axis"),
    ((3, 1), 8, 32, "must divide the member count"),
    ((4, 4), 16, 32, "needs 16 devices"),
    ((8,), 8, 32, "(members, data)")])
def test_bad_mesh_shapes_are_refused(shape, members, batch, words):
    with pytest.raises(UserError) as error:
        sharding._check_mesh_shape(shape, 8, members, batch)
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


def test_a_half_set_launcher_stops_the_command_line_before_compute(tmp_path):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS="127.0.0.1:1")
    result = subprocess.run(_command(tmp_path / "run", tmp_path / "tfds", 1), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "JAX_NUM_PROCESSES" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tfds").exists()


def test_a_batch_that_does_not_split_over_the_devices_stops_before_compute(tmp_path):
    result = subprocess.run(_command(tmp_path / "run", tmp_path / "tfds", 1,
                                     "--config.batch_size=12", "--config.mesh_shape=(1,8)"),
                            cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "batch_size=12 does not divide" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tfds").exists()
