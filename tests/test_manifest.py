"""The run manifest: dataset fingerprints, source state, versions, devices."""

import hashlib
import importlib.metadata
import shutil

import jax

from ae4ad_jax import manifest


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


def test_source_versions_and_devices(tmp_path):
    state = manifest.git_state()
    assert state["commit"] is None or (len(state["commit"]) == 40 and
                                       int(state["commit"], 16) >= 0)
    assert manifest.git_state(str(tmp_path)) == {"commit": None, "dirty": None}
    versions = manifest.package_versions()
    assert versions["jax"] == jax.__version__ == importlib.metadata.version("jax")
    devices = manifest.devices()
    assert devices["count"] == jax.device_count() and devices["processes"] == 1
    assert devices["platform"] == "cpu"


def test_content_fingerprint_is_the_same_for_two_builds_of_one_dataset(tmp_path):
    from ae4ad_jax import input_pipeline
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
