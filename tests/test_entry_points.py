"""The command lines' error paths, in process: a user mistake prints one `error:` paragraph
on stderr and exits with status 2, before any compute, without a traceback. (Each entry
point also runs once as a subprocess elsewhere: main in tests/training/test_resume.py,
score in tests/serving/test_score.py.)"""

import pytest

from ae4ad_jax import main
from ae4ad_jax.core.errors import exit_on_user_error
from ae4ad_jax.reporting.build import write_report
from ae4ad_jax.training.export import export


def _stops(capsys, fn, *args):
    """The message `fn(*args)` stops with, as a command line prints it."""
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(fn, *args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_main_needs_a_config_unless_evaluating_a_workdir(capsys, tmp_path):
    assert "No --config given" in _stops(capsys, main.run, None, str(tmp_path), False)
    message = _stops(capsys, main.run, None, str(tmp_path / "empty"), True)
    assert "Cannot read the config of workdir" in message


def test_main_names_a_bad_value_and_a_missing_dataset_before_writing(capsys, tmp_path,
                                                                   test_config):
    test_config.latent_size = 0
    message = _stops(capsys, main.run, test_config, str(tmp_path / "run"), False)
    assert message == "error: Config key latent_size must be a positive integer, got 0.\n"
    assert not (tmp_path / "run").exists()
    from configs import rsna

    config = rsna.get_config()
    config.data_dir, config.tfds_dir = str(tmp_path / "no_rsna"), str(tmp_path / "tfds")
    message = _stops(capsys, main.run, config, str(tmp_path / "run"), False)
    assert "no_rsna of dataset 'rsna' does not exist. Download RSNA from" in message
    assert not (tmp_path / "tfds").exists()


def test_report_and_export_name_what_is_missing(capsys, tmp_path, finished_run):
    message = _stops(capsys, write_report, [str(tmp_path / "nowhere")], None)
    assert "Cannot read the final metrics" in message and "Has the run finished?" in message
    assert not (tmp_path / "nowhere").exists()  # nothing written for a missing run
    message = _stops(capsys, export, finished_run.workdir, 3, str(tmp_path / "out"))
    assert "Member 3 does not exist" in message and not (tmp_path / "out").exists()
    message = _stops(capsys, export, str(tmp_path / "nowhere"), 0, str(tmp_path / "s.bin"),
                     "stablehlo")
    assert "Workdir" in message and "does not exist" in message
    assert not (tmp_path / "s.bin").exists()
