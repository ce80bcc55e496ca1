"""One workdir, one run: the lock names its holder, a dead holder's lock is taken over,
another host's only when the user says so."""

import json
import os
import socket
import subprocess
import sys

import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.runs import lock
from ae4ad_jax.training import loop


def _write_lock(workdir, **holder):
    os.makedirs(workdir, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "start": "2026-12-05 09:00:00"}
    record.update(holder)
    with open(os.path.join(workdir, lock.LOCK_FILE), "w") as f:
        json.dump(record, f)


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_holder_refuses_a_second_run(test_config, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, pid=holder.pid)
        with pytest.raises(UserError, match=rf"Workdir {tmp_path} is in use by process "
                                            rf"{holder.pid} on host {socket.gethostname()}, "
                                            r"started 2026-12-05 09:00:00"):
            loop.train_and_evaluate(test_config, str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "config.json").exists()  # refused before anything was written


def test_a_dead_holders_lock_is_taken_over_and_released(tmp_path, capsys):
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid)
    path = lock.acquire(str(tmp_path))
    assert f"from process {pid} on host {socket.gethostname()}" in capsys.readouterr().out
    with open(path) as f:
        assert json.load(f)["pid"] == os.getpid()
    lock.release(path)
    assert not os.path.exists(path)


def test_another_hosts_lock_needs_the_flag(tmp_path):
    _write_lock(tmp_path, host="node-17", pid=4242)
    with pytest.raises(UserError, match="locked by process 4242 on host node-17.*start "
                                        "again with --take_over_lock"):
        lock.acquire(str(tmp_path))
    path = lock.acquire(str(tmp_path), take_over=True)
    lock.release(path)
