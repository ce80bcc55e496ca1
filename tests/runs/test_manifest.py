"""The run manifest: dataset fingerprints, source state, versions, devices."""

import hashlib
import importlib.metadata
import shutil
import subprocess

import jax

from ae4ad_jax.runs import manifest


def _folder(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"abc")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 5000)  # over one read chunk
    return root


def test_fingerprint_follows_content_and_names_not_location(tmp_path):
    first = _folder(tmp_path / "one")
    print_one = manifest.fingerprint(str(first))
    assert print_one["files"] == 2 and print_one["bytes"] == 3 + 256 * 5000
    # An independent digest of the documented rule (relative path, NUL, bytes, NUL).
    digest = hashlib.sha256()
    for name, data in (("a.bin", b"abc"), ("sub/b.bin", bytes(range(256)) * 5000)):
        digest.update(name.encode() + b"\0" + data + b"\0")
    assert print_one["sha256"] == digest.hexdigest()
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    assert manifest.fingerprint(str(copy)) == print_one
    (copy / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4999 + bytes([1]) + bytes(255))
    assert manifest.fingerprint(str(copy))["sha256"] != print_one["sha256"]
    (first / "a.bin").rename(first / "c.bin")
    assert manifest.fingerprint(str(first))["sha256"] != print_one["sha256"]


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   timeout=60)


def test_the_source_state_is_the_checkout_commit_and_its_changes(tmp_path):
    assert manifest.git_state(str(tmp_path)) == {"commit": None, "dirty": None}  # no git
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = (tmp_path / ".git" / "refs" / "heads" / "main").read_text().strip()
    assert manifest.git_state(str(tmp_path)) == {"commit": head, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert manifest.git_state(str(tmp_path)) == {"commit": head, "dirty": True}


def test_versions_and_devices():
    versions = manifest.package_versions()
    assert versions["jax"] == jax.__version__ == importlib.metadata.version("jax")
    devices = manifest.devices()
    assert devices["count"] == jax.device_count() and devices["processes"] == 1
    assert devices["platform"] == "cpu"


def test_content_fingerprint_is_the_same_for_two_builds_of_one_dataset(tmp_path):
    from ae4ad_jax.data import pipeline as input_pipeline
    from configs import test

    prints = []
    for name in ("one", "two"):
        config = test.get_config()
        config.tfds_dir = str(tmp_path / name)
        data = input_pipeline.load(config)
        prints.append(manifest.create_manifest(data)["dataset"])
    assert prints[0]["content_sha256"] == prints[1]["content_sha256"]
    assert prints[0]["files"]["bytes"] == prints[1]["files"]["bytes"]
    config.phantom.seed = 1  # other images: another content fingerprint
    other = manifest.create_manifest(input_pipeline.load(config))["dataset"]
    assert other["content_sha256"] != prints[0]["content_sha256"]
