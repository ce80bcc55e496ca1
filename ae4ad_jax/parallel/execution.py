"""How a run is compiled on this backend: the config's `execution` group resolved to a Plan.

No setting here changes results (tests check every choice against the others);
"auto" picks what is fast on the backend:

- `kernels`: the layers' forms, `nets.cpu_kernels.CPU` on CPU, `nets.kernels.XLA` (XLA's own
  convolutions and reductions: cuDNN, the TPU emitter) elsewhere.
- `member_lowering`: how ensemble members share a program. "vmap" batches them
  into one program; "unroll" writes them side by side; "host" runs one program
  per member. XLA:CPU turns vmapped convolutions into slow grouped ones, so CPU
  runs members one after another.
- `epoch_loop`: "scan" compiles a whole epoch into one program; "host" runs one
  jitted step per batch. XLA:CPU runs convolutions inside a loop many times
  slower than outside one, so CPU loops on the host.
- `donate_state`: whether the step reuses the train state's buffers. XLA:CPU
  then copies every parameter at each step, so CPU does not donate.
- `member_chunk_size`: members per program, one chunk after another; 0 fits as
  many as the device memory of every local device allows (`fit_to_memory`).
- `memory_limit_bytes`: the device memory `member_chunk_size = 0` plans for: 0 is
  what each device reports (`memory_stats()["bytes_limit"]`; CPUs report none); a
  number plans as if every device had that many bytes (a GPU shared with other work,
  or an accelerator's plan tried on a CPU).
- `steps_per_program`: with the "scan" loop, steps per program (0: the whole
  epoch). A run stops (`training/preemption.py`) only between programs, so a
  smaller value lets a long epoch stop sooner.
"""

import dataclasses
import os

import jax
from jax.experimental.compilation_cache import compilation_cache

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.settings import setting
from ae4ad_jax.nets import cpu_kernels, kernels


@dataclasses.dataclass(frozen=True)
class Execution:
    """The config group `execution` (the module's docstring says what each does)."""
    kernels: str = setting("auto", "the layers' forms", choices=("auto", "xla", "cpu"))
    member_lowering: str = setting("auto", "how members share a program",
                                   choices=("auto", "vmap", "unroll", "host"))
    epoch_loop: str = setting("auto", "a scanned epoch or a host loop of steps",
                              choices=("auto", "scan", "host"))
    donate_state: str = setting("auto", "reuse the train state's buffers",
                                choices=("auto", "yes", "no"))
    member_chunk_size: int = setting(0, "members per program (0: as memory allows)", low=0)
    steps_per_program: int = setting(0, "steps per scanned program (0: an epoch)", low=0)
    memory_limit_bytes: int = setting(0, "device memory to plan for (0: reported)", low=0)

_AUTO = {  # key: (choice on CPU, choice on GPU and TPU)
    "kernels": ("cpu", "xla"),
    "member_lowering": ("host", "vmap"),
    "epoch_loop": ("host", "scan"),
    "donate_state": ("no", "yes"),
}
MEMORY_FRACTION = 0.7  # of a device's memory that a chunk of members may plan to use


@dataclasses.dataclass(frozen=True)
class Plan:
    kernels: str  # "xla" | "cpu"
    lowering: str  # "vmap" | "unroll": members within one program
    loop: str  # "scan" | "host"
    donate: bool
    chunk: int  # members per program (0: all)
    steps_per_program: int = 0  # with loop "scan": steps per program (0: the whole epoch)
    memory_limit: int = 0  # bytes each device may hold (0: what the devices report)


def plan_execution(config, backend: str | None = None) -> Plan:
    """The plan for `backend` (default: JAX's default backend)."""
    on_cpu = (backend or jax.default_backend()) == "cpu"
    chosen = {}
    for key, (cpu_choice, accelerator_choice) in _AUTO.items():
        value = config.execution[key]
        chosen[key] = value if value != "auto" else (cpu_choice if on_cpu else
                                                     accelerator_choice)
    lowering, chunk = chosen["member_lowering"], config.execution.member_chunk_size
    if lowering == "host":  # one member per program
        lowering, chunk = "unroll", 1
    return Plan(kernels=chosen["kernels"], lowering=lowering, loop=chosen["epoch_loop"],
                donate=chosen["donate_state"] == "yes", chunk=chunk,
                steps_per_program=config.execution.get("steps_per_program", 0),
                memory_limit=config.execution.get("memory_limit_bytes", 0))


def model_kernels(config) -> kernels.Kernels:
    """The layer kernels the config's plan chooses on this backend."""
    return {"xla": kernels.XLA, "cpu": cpu_kernels.CPU}[plan_execution(config).kernels]


@dataclasses.dataclass(frozen=True)
class MemoryNeed:
    """What a run holds in each device's memory, in bytes (`training/memory.py` measures it):
    `data` the rows placed there for the whole run, `state` one member's train state, and
    `program` what one member adds to a program while it runs (the temporaries of its
    training steps or its scoring outputs, whichever is larger)."""
    data: int
    state: int
    program: int

    def total(self, num_members: int, chunk: int, donate: bool) -> int:
        """Peak bytes of `num_members` members trained `chunk` per program. Every member's
        state stays on the device between programs; an undonated step writes a new state
        beside the old one, and the old ones are released only after the last chunk."""
        return self.data + num_members * self.state * (1 if donate else 2) + chunk * self.program


def device_memory() -> int | None:
    """The smallest memory limit (`memory_stats()["bytes_limit"]`) of the local devices;
    None when none reports one (CPU)."""
    limits = [(device.memory_stats() or {}).get("bytes_limit") for device in
              jax.local_devices()]
    limits = [limit for limit in limits if limit]
    return min(limits) if limits else None


def _gb(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e8 else f"{num_bytes / 1e6:.1f} MB"


def fit_to_memory(plan: Plan, num_members: int, need_fn, limit: int | None = None) -> Plan:
    """The plan with an automatic chunk size (0) set so that a device's `num_members`
    members run in the fewest programs that fit MEMORY_FRACTION of its memory `limit`
    (default: the plan's `memory_limit`, else `device_memory()`) by the estimate
    `need_fn()` (a `MemoryNeed`, asked only when there is a limit), in chunks as equal as
    they can be (8 members of which 5 fit: 4 + 4, one compiled program). Without a limit
    all members share one program; a chunk set in the config is kept. Raises UserError
    when not even one member fits."""
    if plan.chunk:
        return plan
    limit = (plan.memory_limit or device_memory()) if limit is None else limit
    if not limit:
        return dataclasses.replace(plan, chunk=num_members)
    need = need_fn()
    budget = int(MEMORY_FRACTION * limit)
    fit = (budget - need.total(num_members, 0, plan.donate)) // max(need.program, 1)
    if fit < 1:
        raise UserError(
            f"{num_members} member(s) per device do not fit its memory: the data and the "
            f"members' states take {_gb(need.total(num_members, 0, plan.donate))} and one "
            f"member's program {_gb(need.program)}, over the {_gb(budget)} planned for "
            f"({MEMORY_FRACTION:.0%} of {_gb(limit)}). Put fewer members on each device "
            "(more devices: the members axis of the mesh), or lower batch_size or "
            "image_size.")
    programs = -(-num_members // fit)  # the fewest programs, as equal as they can be:
    return dataclasses.replace(plan, chunk=-(-num_members // programs))  # one compile


def describe(plan: Plan, num_members: int, need: MemoryNeed | None = None,
             limit: int | None = None) -> str:
    """One line on how a device's `num_members` members are compiled (and, with an estimate
    and a limit, the bytes planned)."""
    chunk = plan.chunk or num_members
    steps = ("one step per program" if plan.loop == "host" else
             f"{plan.steps_per_program} steps per program" if plan.steps_per_program else
             "a whole epoch per program")
    text = (f"{chunk} of {num_members} member(s) per program ({plan.lowering}), {steps}, "
            f"state {'donated' if plan.donate else 'copied'}, {plan.kernels} kernels")
    if need is not None and limit:
        text += (f"; about {_gb(need.total(num_members, chunk, plan.donate))} of "
                 f"{_gb(limit)} device memory")
    return text


def members_per_program(plan: Plan, layout) -> int:
    """Members in one program over the whole mesh (0: all): `plan.chunk` per device."""
    return plan.chunk * layout.members


def cache_folder(setting: str, environ=os.environ) -> str:
    """The folder of JAX's persistent compilation cache that the config's
    `compilation_cache` names: "auto" keeps a folder JAX was given (the variable
    JAX_COMPILATION_CACHE_DIR) and is otherwise the user's cache folder
    ($XDG_CACHE_HOME/ae4ad-jax/jax, ~/.cache/ae4ad-jax/jax); "" is none."""
    if setting != "auto":
        return os.path.expanduser(setting) if setting else ""
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ae4ad-jax", "jax")


def use_compilation_cache(setting: str) -> str:
    """Points JAX's persistent compilation cache at `cache_folder(setting)` (or turns it
    off); programs compiled before in this process stay where they were. Returns the
    folder."""
    folder = cache_folder(setting)
    if folder != (jax.config.jax_compilation_cache_dir or ""):
        compilation_cache.set_cache_dir(folder or None)
        compilation_cache.reset_cache()
    return folder
