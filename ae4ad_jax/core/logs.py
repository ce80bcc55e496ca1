"""Progress lines of a run, and the libraries' own logging kept out of them."""

import sys

import jax


def log(message: str) -> None:
    """A progress line on stdout from process 0 (library logging stays at absl's level)."""
    if jax.process_index() == 0:
        print(message, file=sys.stdout, flush=True)


def quiet_library_logs() -> None:
    """Keeps Orbax's and TFDS's INFO lines, TFDS's progress bars (dataset preparation
    reports its own progress), its note on custom builder configs (all ours are) and
    pydicom's tracebacks of files it cannot decode (each becomes a row in errors.csv)
    out of the progress output, unless -v is given. Entry points call it."""
    import logging as python_logging

    import tensorflow_datasets as tfds
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        tfds.disable_progress_bar()
        python_logging.getLogger("absl").addFilter(
            lambda record: not str(record.msg).startswith("Using custom data configuration"))
        import pydicom.config  # sets its logger's level when imported: import it first

        pydicom.config.logger.setLevel(python_logging.CRITICAL)
