"""Many processes: when and how a run starts `jax.distributed`, from the config or a launcher.

A run spans many processes when the config's `distributed` group names a
coordinator, or when a launcher says so:

- JAX's variables (Kubernetes manifests, custom launchers): `JAX_COORDINATOR_ADDRESS`,
  `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, all three;
- SLURM (`srun`): `SLURM_NTASKS` > 1 with `SLURM_PROCID`;
- Open MPI (`mpirun`): `OMPI_COMM_WORLD_SIZE` > 1 with `OMPI_COMM_WORLD_RANK`;
- a Cloud TPU pod slice: `TPU_WORKER_HOSTNAMES` listing more than one host, with
  `TPU_WORKER_ID`.

Launchers other than JAX's variables are left to JAX's own cluster detection
(`jax.distributed.initialize()` without arguments). A half-set description is
refused before JAX starts, naming what is missing.

A process that dies (a lost host, an OOM kill) would leave the others waiting in a
collective with no message. Each process therefore runs a `Watchdog` thread: it
publishes a heartbeat in the coordination service every few seconds and reads the
others'. A process whose heartbeat stops for `distributed.lost_worker_timeout_s`
(or a coordinator that stops answering) is named in a message, and every
surviving process exits with REQUEUE_STATUS; the checkpoints written so far
stay whole, and the same command resumes from the last one, on this layout or
another. JAX's own heartbeat time-out is set later than the watchdog's, as a
backstop.
"""

import os
import sys
import threading
import time

import jax

from ae4ad_jax.core.errors import REQUEUE_STATUS, UserError

ALIVE_KEY = "ae4ad_jax/alive/"

JAX_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
INITIALIZE_CHOICES = ("auto", "yes", "no")
# (name, variable holding the process count or host list, variable naming this process)
LAUNCHERS = (("SLURM", "SLURM_NTASKS", "SLURM_PROCID"),
             ("Open MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
             ("Cloud TPU", "TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID"))


def _launcher_processes(environ, size_variable) -> int:
    value = environ.get(size_variable, "")
    if size_variable == "TPU_WORKER_HOSTNAMES":
        return len([host for host in value.split(",") if host.strip()])
    try:
        return int(value) if value else 0
    except ValueError:
        raise UserError(f"Environment variable {size_variable}={value!r} is not a number of "
                        "processes.") from None


def _explicit(settings, environ):
    """(address, count, process id) from the config, else JAX's variables; None if neither."""
    given = {"coordinator_address": settings.coordinator_address,
             "num_processes": settings.num_processes if settings.num_processes > 0 else None,
             "process_id": settings.process_id if settings.process_id >= 0 else None}
    if any(value for value in given.values() if value is not None):
        missing = [f"distributed.{key}" for key, value in given.items()
                   if value is None or value == ""]
        if missing:
            raise UserError(f"The config starts a multi-process run but lacks {missing}: set "
                            "coordinator_address, num_processes and process_id together.")
        return tuple(given.values())
    present = [name for name in JAX_VARIABLES if environ.get(name)]
    if not present:
        return None
    if len(present) < len(JAX_VARIABLES):
        missing = [name for name in JAX_VARIABLES if name not in present]
        raise UserError(f"The environment sets {present} but not {missing}; a multi-process "
                        "run needs all three (or none).")
    try:
        return (environ["JAX_COORDINATOR_ADDRESS"], int(environ["JAX_NUM_PROCESSES"]),
                int(environ["JAX_PROCESS_ID"]))
    except ValueError:
        raise UserError(f"JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers, got "
                        f"{environ['JAX_NUM_PROCESSES']!r} and {environ['JAX_PROCESS_ID']!r}."
                        ) from None


def _detected_launcher(environ):
    """The launcher that says this is one of many processes, or None."""
    for name, size_variable, rank_variable in LAUNCHERS:
        if _launcher_processes(environ, size_variable) > 1:
            if rank_variable not in environ:
                raise UserError(f"{name} sets {size_variable} for several processes but not "
                                f"{rank_variable}; start the run through the launcher "
                                f"(srun, mpirun, --worker=all) or unset {size_variable}.")
            return name
    return None


def resolve(settings, environ):
    """How to start: None (one process), ("explicit", address, count, id), or ("cluster",
    launcher name) for JAX's own detection. Raises UserError for half-set settings."""
    if settings.initialize not in INITIALIZE_CHOICES:
        raise UserError(f"Config key distributed.initialize must be one of "
                        f"{INITIALIZE_CHOICES}, got {settings.initialize!r}.")
    if settings.initialize == "no":
        return None
    explicit = _explicit(settings, environ)
    if explicit is not None:
        address, count, process_id = explicit
        if not 0 <= process_id < count:
            raise UserError(f"Process id {process_id} is not in 0 .. {count - 1} "
                            f"(num_processes={count}).")
        return ("explicit", address, count, process_id)
    launcher = _detected_launcher(environ)
    if launcher is not None or settings.initialize == "yes":
        return ("cluster", launcher or "JAX's detection")
    return None


def initialize(settings, environ) -> None:
    """Starts jax.distributed if the settings or the launcher ask for many processes; call
    before any other JAX use."""
    how = resolve(settings, environ)
    if how is None or jax.distributed.is_initialized():
        return
    timeout = int(settings.initialization_timeout_s)
    lost_after = int(settings.get("lost_worker_timeout_s", 90))
    if lost_after < 10:
        raise UserError(f"Config key distributed.lost_worker_timeout_s must be at least 10 "
                        f"(seconds), got {lost_after}.")
    # Collectives between processes on the CPU backend (tests, CPU clusters); GPUs and TPUs
    # use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeouts = dict(initialization_timeout=timeout, heartbeat_timeout_seconds=lost_after + 60,
                    shutdown_timeout_seconds=30)
    if how[0] == "explicit":
        _, address, count, process_id = how
        jax.distributed.initialize(address, count, process_id, **timeouts)
    else:
        jax.distributed.initialize(**timeouts)
    global WATCHDOG
    WATCHDOG = Watchdog(lost_after)
    WATCHDOG.start()


WATCHDOG = None


class Watchdog(threading.Thread):
    """Heartbeats of every process through the coordination service's key-value store;
    exits this process with a message when another one stops beating."""

    def __init__(self, timeout: float, interval: float | None = None):
        super().__init__(name="ae4ad-watchdog", daemon=True)
        from jax._src import distributed as jax_distributed

        self.client = jax_distributed.global_state.client
        self.process, self.count = jax.process_index(), jax.process_count()
        self.timeout = float(timeout)
        self.interval = interval or min(5.0, self.timeout / 6)
        self.finished = threading.Event()

    def stop(self):
        """The run has ended: processes that leave now are not lost."""
        self.finished.set()

    def run(self):
        beats, changed, contact = 0, {}, time.time()
        while not self.finished.is_set():
            beats += 1
            try:
                self.client.key_value_set(f"{ALIVE_KEY}{self.process}", str(beats),
                                          allow_overwrite=True)
                seen = dict(self.client.key_value_dir_get(ALIVE_KEY))
                contact = time.time()
            except Exception as error:  # noqa: BLE001 - the coordinator is unreachable
                if time.time() - contact > self.timeout:
                    self._exit("process 0 (it runs the coordination service) stopped "
                               f"answering {time.time() - contact:.0f} s ago ({error})")
                time.sleep(self.interval)
                continue
            now = time.time()
            for process in range(self.count):
                value = seen.get(f"{ALIVE_KEY}{process}")
                if process not in changed or changed[process][0] != value:
                    changed[process] = (value, now)
            silent = [p for p, (_, since) in changed.items()
                      if p != self.process and now - since > self.timeout]
            if silent:
                names = ", ".join(f"process {p}" for p in silent)
                self._exit(f"{names} sent no heartbeat for {self.timeout:.0f} s (lost: killed, "
                           "out of memory, or its host failed)")
            time.sleep(self.interval)

    def _exit(self, what):
        if self.finished.is_set():
            return
        message = (f"error: lost a worker of this {self.count}-process run: {what}. This is "
                     f"process {self.process}; it stops with status {REQUEUE_STATUS}. The "
                     "checkpoints written so far are whole: run the same command again (on "
                     "these or other processes, or one) to resume from the last one.")
        print(message, file=sys.stderr, flush=True)
        os._exit(REQUEUE_STATUS)

    def explain(self, error: BaseException) -> None:
        """After an error in a multi-process run: if a process was lost (the error came
        from a collective whose peer died), waits for the heartbeats to say which, then
        exits with the message. Returns if every process still beats."""
        deadline = time.time() + self.timeout + 3 * self.interval
        print(f"A step of this {self.count}-process run failed ({type(error).__name__}); "
              "checking whether a process was lost ...", file=sys.stderr, flush=True)
        while time.time() < deadline and self.is_alive():
            time.sleep(self.interval / 2)
