"""The plans the memory planner chooses for Table 1 on devices this machine does not have.

    python -m experiments.memory_plans [--sizes=64,128] [--dataset=brats]

Table 1 (d = 1..128 x three seeds: 24 members) on BraTS2021 (4211 train images, 828 + 1948
test images scored with maps: the largest data and outputs of the paper's four datasets),
batch 64, float32, with the accelerator's plan (XLA kernels, members vmapped, a scanned
epoch, the state donated). The estimate (`training/memory.py`) comes from XLA's memory
analysis of one member's programs compiled here, on XLA:CPU: a GPU's or a TPU's compiler
lays out buffers in its own way, so `experiments/gpu_check.py` records the estimate beside
the peak a device measured. Device limits are what JAX reports as `bytes_limit`: 75% of a
GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION's default) and a TPU's HBM. Prints a Markdown
table (docs/performance.md).
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))


from absl import app, flags

from ae4ad_jax.core import datasets
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import execution
from ae4ad_jax.training import memory
from ae4ad_jax.training import state as train_state
from configs import benchmark

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["64", "128"], "Input sizes.")
flags.DEFINE_string("dataset", "brats", "The dataset of configs/benchmark.py (its config).")
DEVICES = (  # (name, bytes_limit as JAX reports it)
    ("16 GB GPU", int(0.75 * 16e9)),
    ("H100 80 GB", int(0.75 * 81559 * 2**20)),
    ("TPU v4 (32 GiB HBM)", 32 * 2**30),
)
ACCELERATOR = {"kernels": "xla", "member_lowering": "vmap", "epoch_loop": "scan",
               "donate_state": "yes"}


def table1_config(size):
    config = benchmark.get_config(f"{FLAGS.dataset},table1")
    config.image_size, config.channels = size, 1
    config.execution.update(ACCELERATOR)
    return config


def plans(size):
    """[(device, bytes_limit, plan or refusal, need)] for Table 1 at `size`."""
    config = table1_config(size)
    members = len(config.latent_sizes) * len(config.seeds)
    method = registry.create(config)
    # One member of the largest latent size: every member's state has its shapes.
    state = train_state.create_train_state(
        config, method, [{"latent_size": max(config.latent_sizes), "seed": 0}])
    spec = datasets.SPECS[FLAGS.dataset]
    train, test = spec.train_images, spec.test_images
    plan = execution.plan_execution(config, backend="gpu")
    need = memory.memory_need(state, config, method, plan, {"train": train, "test": test},
                              with_maps=spec.has_masks)
    rows = []
    for name, limit in DEVICES:
        try:
            chosen = execution.fit_to_memory(plan, members, lambda: need, limit=limit)
        except UserError as error:
            chosen = error
        rows.append((name, limit, chosen, need, members, config, train))
    return rows


def markdown(rows_by_size):
    lines = ["| input | device (bytes_limit) | members per program | steps per program "
             "| state | planned peak |", "|---|---|---|---|---|---|"]
    for size, rows in rows_by_size.items():
        for name, limit, plan, need, members, config, train in rows:
            if isinstance(plan, UserError):
                lines.append(f"| {size}x{size} | {name} ({limit / 1e9:.1f} GB) | refused | - "
                             "| - | - |")
                continue
            steps = (plan.steps_per_program or -(-train // config.batch_size))
            peak = need.total(members, plan.chunk, plan.donate)
            lines.append(f"| {size}x{size} | {name} ({limit / 1e9:.1f} GB) | {plan.chunk} of "
                         f"{members} | {steps} (a whole epoch) | "
                         f"{'donated' if plan.donate else 'copied'} | {peak / 1e9:.1f} GB |")
        need = rows[0][3]
        lines.append(f"| {size}x{size} | estimate per device | data {need.data / 1e9:.2f} GB, "
                     f"state {need.state / 1e6:.0f} MB per member, program "
                     f"{need.program / 1e6:.0f} MB per member | | | |")
    return "\n".join(lines)


def main(argv):
    del argv
    table = markdown({int(size): plans(int(size)) for size in FLAGS.sizes})
    print(table)


if __name__ == "__main__":
    app.run(main)
