"""Test settings: fast CPU compiles (here and in subprocesses), one persistent compilation
cache for the whole test run (both test processes and their subprocesses compile each
program once), the command line's XLA:CPU option, the repository root importable (for
`configs`), and the fixtures many test modules share: the test config and one finished
run per test process."""

import dataclasses
import os
import shutil
import sys
import tempfile

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ae4ad_jax.nets import cpu_kernels  # noqa: E402
from ae4ad_jax.parallel import programs  # noqa: E402

# XLA:CPU's MLIR fusion emitters take about 40% of the suite's compile time; the legacy
# emitters compile the same programs faster (the suite compiles far more than it runs).
# Here and in every subprocess of the tests (they copy or extend this XLA_FLAGS).
TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
cpu_kernels.apply_xla_cpu_flags()  # as the command-line entry points do
# One cache folder per test run, shared by pytest-xdist's workers (the same run id).
CACHE_DIR = os.path.join(tempfile.gettempdir(), "ae4ad_jax_test_cache_" + os.environ.get(
    "PYTEST_XDIST_TESTRUNUID", str(os.getpid())))
SETTINGS = {"jax_disable_most_optimizations": True, "jax_compilation_cache_dir": CACHE_DIR,
            "jax_persistent_cache_min_compile_time_secs": 0.0,
            "jax_persistent_cache_min_entry_size_bytes": 0}
for name, value in SETTINGS.items():
    jax.config.update(name, value)
    # The same for the command lines and scripts that tests start in subprocesses.
    os.environ[name.upper()] = str(int(value) if isinstance(value, bool) else value)


# The longest test files, sent first to the test processes (`--dist loadfile` keeps a file
# on one process), so that no process is left with a long file at the end.
LONGEST_FIRST = ("tests/parallel/test_sharding.py", "tests/methods/test_methods.py",
                 "tests/test_experiments.py", "tests/parallel/test_ensemble.py",
                 "tests/training/test_train.py",
                 "tests/parallel/test_processes.py", "tests/test_gpu_check.py",
                 "tests/serving/test_onnx.py", "tests/serving/test_estimator.py",
                 "tests/parallel/test_memory_plan.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        path = os.path.relpath(str(item.path), ROOT)
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file and among the rest is kept


def pytest_sessionfinish(session):
    """The controlling process (not an xdist worker) removes the run's cache."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Frees each test module's compiled programs when it ends. XLA:CPU maps every
    compiled kernel into memory; a whole suite's worth of live programs exceeds Linux's
    limit on memory mappings (vm.max_map_count, 65530) and the compiler then crashes."""
    yield
    programs.clear_programs()
    jax.clear_caches()


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """One folder of prepared datasets for the whole session (of this test process)."""
    return str(tmp_path_factory.getbasetemp() / "tfds")


@pytest.fixture
def test_config(tfds_dir):
    """configs/test.py with the session's TFDS folder."""
    from configs import test

    config = test.get_config()
    config.tfds_dir = tfds_dir
    return config


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    config: object
    workdir: str
    summary: dict


@pytest.fixture(scope="session")
def finished_run(tfds_dir, tmp_path_factory):
    """configs/test.py trained and evaluated once per test process. Tests read its
    workdir; a test that changes files works on a copy."""
    from ae4ad_jax.training import loop
    from configs import test

    config = test.get_config()
    config.tfds_dir = tfds_dir
    workdir = str(tmp_path_factory.mktemp("finished") / "run")
    summary = loop.train_and_evaluate(config, workdir)
    programs.clear_programs()
    jax.clear_caches()
    return FinishedRun(config, workdir, summary)
