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
"""

import jax

from ae4ad_jax.core.errors import UserError

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
    # Collectives between processes on the CPU backend (tests, CPU clusters); GPUs and TPUs
    # use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if how[0] == "explicit":
        _, address, count, process_id = how
        jax.distributed.initialize(address, count, process_id,
                                   initialization_timeout=timeout)
    else:
        jax.distributed.initialize(initialization_timeout=timeout)
