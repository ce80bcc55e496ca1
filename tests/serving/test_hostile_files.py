"""The score command on a hostile corpus (experiments/hostile_files.py: bombs of every
format, truncated and empty files, a FIFO, a symlink loop, a name that is not UTF-8, EPS
named .png, DICOM colour spaces that cannot be converted, 16-bit images) and on pydicom's
own 78 test files, in one subprocess whose address space is limited."""

import collections
import csv
import json
import os

from experiments import hostile_files

MEMORY_LIMIT_MB = 3072  # the command itself needs ~2 GB of address space (threads)
PEAK_RSS_MB = 1200  # what it may use at its peak; it needs ~400 MB to score a PNG
SECONDS = 240
# pydicom 3.0.2's test files that hold no image or a broken one, by the start of the reason
PYDICOM_REFUSED = {"a DICOM file without pixel data": 14,  # reports, plans, waveforms
                   "declares an empty image": 2,  # pixel data without Rows and Columns
                   "its pixel data": 2,  # one truncated, one corrupt JPEG stream
                   "its frame 0 declares": 1,  # a corrupt JPEG 2000 codestream
                   "its NumberOfFrames is not a number": 1}  # badVR.dcm: '1A'


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_score_command_survives_a_hostile_corpus_within_bounds(finished_run, tmp_path):
    corpus = str(tmp_path / "corpus")
    expected = hostile_files.write_corpus(corpus, volume_side=96)
    pydicom_files = hostile_files.pydicom_test_files()
    assert len(pydicom_files) == 78
    out = str(tmp_path / "out")
    status, peak_mb, seconds, output = hostile_files.score_limited(
        finished_run.workdir, [corpus, *pydicom_files], out, MEMORY_LIMIT_MB,
        timeout_s=SECONDS)
    assert status == 1, output[-3000:]
    assert "Traceback" not in output
    assert peak_mb < PEAK_RSS_MB and seconds < SECONDS, (peak_mb, seconds)
    scores, errors = _rows(os.path.join(out, "scores.csv")), _rows(os.path.join(out,
                                                                             "errors.csv"))
    scored = collections.Counter(row["file"] for row in scores)
    refused = collections.Counter(row["file"] for row in errors)
    assert max(refused.values()) == 1  # one row per bad file
    assert not set(scored) & set(refused)
    for name, outcome in expected.items():
        shown = os.path.join(corpus, os.fsencode(name).decode("utf-8", "backslashreplace"))
        assert (shown in scored) == (outcome == "scored"), name
        assert (shown in refused) == (outcome == "error"), name
    assert scored[os.path.join(corpus, "zeros96.nii.gz")] == 96
    assert scored[os.path.join(corpus, "caf\\xe9.png")] == 1  # the byte escaped
    # an image and a volume slice that would share a map name get one each
    maps = {(os.path.basename(r["file"]), r["slice"]): r["map"] for r in scores}
    first, second = maps[("scan.nii.gz", "0")], maps[("scan_slice0000.png", "")]
    assert first != second and os.path.isfile(os.path.join(out, first))
    assert os.path.isfile(os.path.join(out, second))
    assert all(os.path.isfile(os.path.join(out, r["map"])) for r in scores)
    # pydicom's own files: every one that holds a decodable image is scored
    assert sum(f in pydicom_files for f in scored) == 58
    reasons = collections.Counter(
        next(start for start in PYDICOM_REFUSED if row["reason"].startswith(start))
        for row in errors if row["file"] in pydicom_files)
    assert reasons == PYDICOM_REFUSED
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["status"] == "complete"
    assert summary["files"] == len(expected) + 78
    assert summary["files_unreadable"] == len(errors) == len(refused)
    assert not [n for n in os.listdir(out) if n.endswith(".partial")]
