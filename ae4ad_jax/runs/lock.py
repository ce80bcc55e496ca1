"""One workdir, one run: a lock file in the workdir naming the run that holds it.

`WORKDIR/run.lock` records the holder's host, pid and start time. It is created
atomically (O_EXCL), so of two runs started together exactly one gets it. A lock
whose pid no longer runs on this host was left by a killed run and is taken over,
with a message; a lock from another host cannot be checked from here and is taken
over only when the user says so (`--take_over_lock`). A multi-process run holds
one lock, taken by process 0 (`training/loop.py`).
"""

import contextlib
import json
import os
import socket
import time

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.logs import log

LOCK_FILE = "run.lock"
TAKE_OVER_FLAG = "--take_over_lock"


def _holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "start": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _describe(holder: dict) -> str:
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('start', '?')}")


def _pid_runs(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True  # another user's process, or an unreadable pid: assume it runs
    return True


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # being written, or damaged: an unknown holder


def _create(path: str, record: dict) -> bool:
    """Writes the lock if there is none; False if one exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return True


def acquire(workdir: str, *, take_over: bool = False) -> str:
    """Takes the workdir's lock for this process; returns the lock's path.

    Refuses (UserError naming the holder) when a live run on this host holds it, or a
    run on another host does and `take_over` is not set."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise UserError(f"Workdir {workdir} cannot be created or written: {error}.") from None
    path = os.path.join(workdir, LOCK_FILE)
    record = _holder_record()
    for _ in range(3):  # a lock removed between our attempts: try again
        try:
            if _create(path, record):
                return path
        except OSError as error:
            raise UserError(f"Workdir {workdir} cannot be created or written: {error} (its "
                            f"lock {LOCK_FILE}).") from None
        holder = _read(path)
        if not holder and os.path.exists(path) and time.time() - os.path.getmtime(path) < 5:
            time.sleep(0.5)  # just created by another run, not yet written
            holder = _read(path)
        same_host = holder.get("host") == record["host"]
        if same_host and holder.get("pid") == record["pid"]:
            return path  # already ours (a comparison's runs share the process)
        if same_host and _pid_runs(holder.get("pid")):
            raise UserError(
                f"Workdir {workdir} is in use by {_describe(holder)} (lock {path}). Wait for "
                "that run to end, stop it, or use another --workdir.")
        if holder and not same_host and not take_over:
            raise UserError(
                f"Workdir {workdir} is locked by {_describe(holder)}, which cannot be checked "
                f"from this host ({record['host']}). If that run has ended, start again with "
                f"{TAKE_OVER_FLAG}; if it runs, use another --workdir.")
        reason = ("its process no longer runs" if same_host else
                  f"{TAKE_OVER_FLAG} was given" if holder else "the lock file was unreadable")
        log(f"Taking over the lock of workdir {workdir} from {_describe(holder)}: {reason}.")
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    raise UserError(f"Could not take the lock {path}: other runs keep taking it.")


def release(path: str) -> None:
    """Removes the lock if this process holds it."""
    holder = _read(path)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
