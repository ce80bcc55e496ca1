"""Every method keeps the AE's guarantees: a member of a mixed-size ensemble on a
(member, data) = (2, 4) mesh of 8 CPU devices trains and scores as the standalone model
of its size on one device (tests/family_multidevice_run.py, in a subprocess).

CI runs the methods whose mechanisms differ (per-row sampling and corruption, batch-level
noise, re-encoding, a second network, a memory, a convolutional code, a second output, a
quantised code with a learned rate: "ae+rate"); the others change only per-row loss,
map and score functions (AE-Grad's gradient scores are per row). The whole
family: `python tests/family_multidevice_run.py OUT $(python -c "from ae4ad_jax.methods
import NAMES; print(*NAMES)")` with the XLA_FLAGS below.
"""

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("vae", "ceae", "dae", "constrained-ae", "ganomaly", "memae", "ae-spatial", "aeu",
           "ae+rate")
TIMEOUT_S = 900


def test_ensemble_members_on_a_mesh_match_standalone_models(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "family_multidevice_run.py"),
                    str(tmp_path), *METHODS], cwd=ROOT, env=env, check=True,
                   timeout=TIMEOUT_S, capture_output=True)
    for name in METHODS:
        for m in (0, 1):
            alone = dict(np.load(tmp_path / f"{name}_alone{m}.npz"))
            mesh = dict(np.load(tmp_path / f"{name}_mesh{m}.npz"))
            where = f"{name} member {m}"
            assert alone["losses"].shape == (6,)  # 2 epochs of 3 steps, the last partial
            np.testing.assert_allclose(mesh["losses"], alone["losses"], rtol=1e-4,
                                       err_msg=f"{where}: losses")
            np.testing.assert_allclose(mesh["score"], alone["score"], rtol=1e-4, atol=1e-7,
                                       err_msg=f"{where}: scores")
            leaves = sorted(key for key in alone if key.startswith("leaf"))
            assert len(leaves) > 10
            for key in leaves:  # in norm, as tests/test_sharding.py
                assert mesh[key].shape == alone[key].shape, f"{where}: {key} shape"
                error = np.linalg.norm(mesh[key] - alone[key]) / (
                    np.linalg.norm(alone[key]) + 1e-12)
                assert error < 1e-3, f"{where}: {key} differs by {error:.2e} of its norm"
