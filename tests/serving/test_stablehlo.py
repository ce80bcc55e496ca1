"""The StableHLO export (jax.export) scores as the run's evaluation did."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import pipeline
from ae4ad_jax.runs import results
from ae4ad_jax.serving import detector as detector_lib
from ae4ad_jax.serving import stablehlo

# Only JAX and numpy: the artefact runs without this package (its payload follows the
# magic line and the JSON header line).
STANDALONE = """
import sys, jax, numpy as np
payload = open(sys.argv[1], "rb").read().split(b"\\n", 2)[2]
exported = jax.export.deserialize(bytearray(payload))
images = np.load(sys.argv[2])
out = exported.call(images)
np.savez(sys.argv[3], score=np.asarray(out["score"]), map=np.asarray(out["map"]))
"""


def test_the_stablehlo_file_scores_as_the_evaluation_and_runs_alone(finished_run, tmp_path):
    """Written by the command line, as a user writes it."""
    path = str(tmp_path / "ae.stablehlo")
    written = subprocess.run(
        [sys.executable, "-m", "ae4ad_jax.export", f"--workdir={finished_run.workdir}",
         "--format=stablehlo", f"--out={path}"], capture_output=True, text=True, timeout=300,
        check=True)
    info = json.loads(written.stdout.strip().splitlines()[-1])
    assert info["input"] == [64, 32, 32, 1] and info["epoch"] == 5
    assert info["format"] == "stablehlo" and info["member"] == 0
    images = pipeline.load(finished_run.config).test_images[:70]  # a full batch and a part
    evaluated = results.read_scores(finished_run.workdir)["test"][0][:70]
    scored = stablehlo.load_stablehlo(path)(images)
    np.testing.assert_allclose(scored["score"], evaluated, rtol=1e-5)
    maps = detector_lib.load(finished_run.workdir).score(images)["map"]
    np.testing.assert_allclose(scored["map"], maps, rtol=1e-5, atol=1e-7)
    np.save(tmp_path / "batch.npy", images[:64])
    subprocess.run([sys.executable, "-c", STANDALONE, path, str(tmp_path / "batch.npy"),
                    str(tmp_path / "out.npz")], cwd=tmp_path, check=True, timeout=300)
    alone = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(alone["score"], evaluated[:64], rtol=1e-5)
    with pytest.raises(ValueError, match=r"takes uint8 images \[N, 32, 32, 1\], got "):
        stablehlo.load_stablehlo(path)(np.zeros((2, 16, 16, 1), np.uint8))
    _damaged_files_are_refused(path, tmp_path)


def _damaged_files_are_refused(path, tmp_path):
    """Every one of 200 random 3-byte corruptions is refused with a message (none loads);
    so are a file without the header, a header declaring a batch of 2**31, and a header
    that contradicts the program (the checksum covers the program only)."""
    data = open(path, "rb").read()
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.bin"
    for _ in range(200):
        damaged = bytearray(data)
        for offset in rng.integers(0, len(data), 3):
            damaged[offset] ^= int(rng.integers(1, 256))
        bad.write_bytes(bytes(damaged))
        with pytest.raises(UserError, match="is not a usable StableHLO file"):
            stablehlo.load_stablehlo(str(bad))
    magic, header, payload = data.split(b"\n", 2)
    for content, message in (
            (payload, "does not start as a StableHLO file of ae4ad-jax does"),
            (header.replace(b"[64, ", b"[2147483648, "),
             r"input shape \(2147483648, 32, 32, 1\) is outside"),
            (header.replace(b"[64, ", b"[32, "), r"takes uint8 \(64, 32, 32, 1\), its header")):
        bad.write_bytes(content if content is payload else magic + b"\n" + content + b"\n"
                        + payload)
        with pytest.raises(UserError, match=message):
            stablehlo.load_stablehlo(str(bad))


def test_the_old_command_name_says_the_new_one(tmp_path):
    old = subprocess.run([sys.executable, "-m", "ae4ad_jax.scorer", "--workdir=runs/default",
                          f"--out={tmp_path / 's.bin'}"], capture_output=True, text=True,
                         timeout=120)
    assert old.returncode == 2 and "Traceback" not in old.stderr
    assert "`python -m ae4ad_jax.export --format=stablehlo` (same arguments)" in old.stderr
    assert not (tmp_path / "s.bin").exists()
