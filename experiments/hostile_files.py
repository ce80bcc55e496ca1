"""The score command on files from strangers: a hostile corpus, scored under a memory limit.

    python -m experiments.hostile_files --workdir=runs/default [--root=/tmp/ae4ad_hostile] \
        [--memory_limit_mb=3072] [--pydicom=true]

Writes a corpus of crafted files of under 0.3 MB each (`write_corpus`: a
decompression bomb for every format, truncated and empty files, a FIFO, a symlink
loop, a name that is not UTF-8, EPS named .png, DICOM colour spaces pydicom cannot
convert, 16-bit images) and scores it with `python -m ae4ad_jax.score` in a
subprocess whose address space is limited (`resource.setrlimit(RLIMIT_AS)`). With
`--pydicom`, it also scores the DICOM test files that ship inside pydicom. Prints,
as JSON: the exit status, peak RSS, seconds, and each file's outcome (its slices
scored, or its row in errors.csv). tests/serving/test_hostile_files.py runs the same
corpus; docs/detector.md records the figures.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import csv
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np

CHUNK = 1 << 24  # bytes of zeros compressed at a time: the bombs never exist uncompressed


def write_png(path, width, height, bit_depth, colour_type, rows):
    """A PNG whose IDAT holds `rows` (a callable giving each row's bytes, without the
    filter byte), compressed as a stream."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor, parts = zlib.compressobj(9), []
    for y in range(height):
        parts.append(compressor.compress(b"\0" + rows(y)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                + chunk(b"IEND", b""))


def write_nifti(path, shape, dtype, data_bytes, version=1):
    """A NIfTI header declaring `shape` and `dtype`, followed by `data_bytes` zero bytes
    (gzip-compressed when the name ends .gz)."""
    import nibabel

    header = (nibabel.Nifti1Header() if version == 1 else nibabel.Nifti2Header())
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = header.single_vox_offset
    block = header.binaryblock + b"\0" * (int(header.single_vox_offset) - len(header.binaryblock))
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(block)
        for start in range(0, data_bytes, CHUNK):
            f.write(bytes(min(CHUNK, data_bytes - start)))


def dicom_dataset(rows, columns, photometric="MONOCHROME2", samples=1, bits=16, frames=1,
                   pixels=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixels is None:
        pixels = np.zeros((frames, rows, columns, samples), np.uint16 if bits == 16 else np.uint8)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_deflate_bomb(path, padding_bytes):
    """A Deflated Explicit VR Little Endian file holding a 64x64 image and then
    `padding_bytes` of Data Set Trailing Padding (FFFC,FFFC): tiny on disk, huge inflated."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = dicom_dataset(64, 64)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(body.getvalue()),
             compressor.compress(struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, padding_bytes))]
    for start in range(0, padding_bytes, CHUNK):
        parts.append(compressor.compress(bytes(min(CHUNK, padding_bytes - start))))
    parts.append(compressor.flush())
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(parts))


def write_jpeg_frame_bomb(path, side):
    """A 64x64 DICOM whose one JPEG baseline frame declares `side` x `side` pixels."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buffer, format="JPEG", quality=90)
    frame = bytearray(buffer.getvalue())
    sof = frame.index(b"\xff\xc0")
    frame[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    ds = dicom_dataset(64, 64, bits=8)
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)


def write_corpus(root, volume_side=400) -> dict:
    """Writes the corpus into `root`; returns {relative name: "scored" or "error"}, what a
    scorer that survives any file does with each. `volume_side`: the zero volume's side
    (400: 256 MB of float32 voxels in a 0.25 MB file)."""
    from PIL import Image
    from pydicom.uid import ExplicitVRLittleEndian

    os.makedirs(root)
    expected = {}

    def path(name, outcome):
        expected[name] = outcome
        return os.path.join(root, name)

    rng = np.random.default_rng(0)
    gray = rng.integers(20, 230, (48, 40), dtype=np.uint8)
    Image.fromarray(gray).save(path("good.png", "scored"))
    Image.fromarray(np.stack([gray] * 3, -1)).save(path("good_rgb.jpg", "scored"), quality=95)
    Image.fromarray(gray.astype(np.uint16) * 200).save(path("gray16.png", "scored"))
    Image.fromarray(gray).save(os.fsdecode(os.path.join(os.fsencode(root), b"caf\xe9.png")))
    expected[os.fsdecode(b"caf\xe9.png")] = "scored"
    # a volume and an image whose map names would be the same
    volume = np.zeros((16, 16, 2), np.float32)
    volume[4:12, 4:12] = 1.0
    import nibabel

    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path("scan.nii.gz", "scored"))
    Image.fromarray(gray).save(path("scan_slice0000.png", "scored"))
    # bombs: tiny files declaring huge images
    write_png(path("bomb16.png", "error"), 10000, 10000, 16, 0, lambda y: bytes(20000))
    write_nifti(path(f"zeros{volume_side}.nii.gz", "scored"), (volume_side,) * 3, np.float32,
                volume_side ** 3 * 4)
    write_nifti(path("declared.nii.gz", "error"), (3000, 3000, 1000), np.uint8, 0)
    write_nifti(path("slices200k.nii.gz", "error"), (1, 1, 200000), np.uint8, 200000, version=2)
    write_deflate_bomb(path("deflated.dcm", "error"), 170 << 20)
    write_jpeg_frame_bomb(path("jpeg_frame.dcm", "error"), 30000)  # 900 MB in its frame
    header = dicom_dataset(64, 64)
    header.Rows = header.Columns = 60000  # declared, the pixel data stays 64x64
    header.save_as(path("declared.dcm", "error"), enforce_file_format=True)
    small = Image.fromarray(gray)
    small.save(path("bomb.jpg", "error"), quality=90)  # SOF0 patched to 60000 x 60000
    data = bytearray(open(os.path.join(root, "bomb.jpg"), "rb").read())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    open(os.path.join(root, "bomb.jpg"), "wb").write(data)
    bmp = struct.pack("<2sIHHI", b"BM", 54, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    open(path("bomb.bmp", "error"), "wb").write(bmp)
    # DICOM colour: spaces pydicom cannot convert, 16-bit RGB
    for space in ("YBR_ICT", "HSV"):
        dicom_dataset(8, 8, space, samples=3, bits=8).save_as(
            path(f"{space.lower()}.dcm", "error"), enforce_file_format=True)
    rgb16 = np.full((1, 8, 8, 3), 300, np.uint16)
    dicom_dataset(8, 8, "RGB", samples=3, pixels=rgb16).save_as(
        path("rgb16.dcm", "scored"), enforce_file_format=True)
    # DICOM: no File Meta header (read as pydicom reads it with force=True), no pixel data
    no_meta = dicom_dataset(16, 16, pixels=np.arange(256, dtype=np.uint16).reshape(1, 16, 16, 1))
    del no_meta.file_meta
    no_meta.save_as(path("no_meta.dcm", "scored"), implicit_vr=True, little_endian=True)
    report = dicom_dataset(8, 8)
    del report.PixelData
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.save_as(path("report.dcm", "error"), enforce_file_format=True)
    # EPS named .png: Pillow would pick its EPS plugin (Ghostscript) by the content
    open(path("postscript.png", "error"), "w").write(
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n")
    # empty and truncated files of every format
    for name in ("empty.png", "empty.dcm", "empty.nii.gz", "empty.tif"):
        open(path(name, "error"), "wb").close()
    for name, source in (("cut.png", "good.png"), ("cut.jpg", "good_rgb.jpg"),
                         ("cut.dcm", "rgb16.dcm"), ("cut.nii.gz", "scan.nii.gz")):
        data = open(os.path.join(root, source), "rb").read()
        open(path(name, "error"), "wb").write(data[:len(data) // 2])
    # not regular files, links
    os.mkfifo(path("pipe.png", "error"))
    os.symlink("loop_b.png", path("loop_a.png", "error"))
    os.symlink("loop_a.png", path("loop_b.png", "error"))
    return expected


def pydicom_test_files() -> list[str]:
    """The DICOM files that ship inside pydicom (pydicom/data/test_files/*.dcm)."""
    import pydicom

    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".dcm"))


# A small process that limits the address space and runs the score command as its child:
# the child's peak RSS (wait4) then counts the score command alone, not the pages of a
# large parent it was forked from.
LIMITED = """
import os, resource, sys
limit, peak_file = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "ae4ad_jax.score", *sys.argv[3:]],
                     os.environ)
_, status, usage = os.wait4(pid, 0)
open(peak_file, "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def score_limited(workdir, inputs, out, memory_limit_mb, timeout_s=600, extra=()):
    """Runs the score command on `inputs` with its address space limited; returns (exit
    status, peak RSS in MB, seconds, output)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    command = [sys.executable, "-c", LIMITED, str(memory_limit_mb << 20), out + ".peak",
               f"--workdir={workdir}", f"--out={out}", *[f"--inputs={i}" for i in inputs],
               *extra]
    start = time.time()
    with open(out + ".log", "w+b") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            status = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # stop the command and its wrapper together
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = "timeout"
        log.seek(0)
        output = log.read()
    seconds = time.time() - start
    peak = int(open(out + ".peak").read()) / 1024 if os.path.exists(out + ".peak") else None
    return status, peak, seconds, output.decode(errors="replace")


def read_outcomes(out) -> dict:
    """{file: "scored: N slice(s)" or "error: reason"} from the command's output files."""
    outcomes = {}
    for name, kind, column in (("scores.csv", "scored", "slice"), ("errors.csv", "error",
                                                                     "reason")):
        target = os.path.join(out, name)
        if not os.path.exists(target):
            continue
        with open(target, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                if kind == "scored":
                    count = outcomes.get(row["file"], (kind, 0))[1] + 1
                    outcomes[row["file"]] = (kind, count)
                else:
                    outcomes[row["file"]] = (kind, row[column])
    return {file: (f"scored: {value} slice(s)" if kind == "scored" else f"error: {value}")
            for file, (kind, value) in outcomes.items()}


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/default")
    parser.add_argument("--root", default="/tmp/ae4ad_hostile")
    parser.add_argument("--memory_limit_mb", type=int, default=3072)
    parser.add_argument("--pydicom", default="true")
    parser.add_argument("--each", default="false", help="Also score each corpus file alone "
                        "(the per-file table of docs/detector.md).")
    parser.add_argument("--timeout_s", type=int, default=600)
    parser.add_argument("--volume_side", type=int, default=400,
                        help="Side of the corpus's zero NIfTI volume (slices scored).")
    args = parser.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    corpus = os.path.join(args.root, "corpus")
    start = time.time()
    write_corpus(corpus, args.volume_side)
    results = {"corpus_seconds": round(time.time() - start, 1),
               "corpus_bytes": sum(os.path.getsize(os.path.join(corpus, n))
                                   for n in os.listdir(corpus)
                                   if os.path.isfile(os.path.join(corpus, n)))}
    runs = {"corpus": [corpus]}
    if args.pydicom == "true":
        runs["pydicom"] = pydicom_test_files()
    for name, inputs in runs.items():
        out = os.path.join(args.root, f"out_{name}")
        status, peak, seconds, output = score_limited(args.workdir, inputs, out,
                                                      args.memory_limit_mb, args.timeout_s)
        outcomes = read_outcomes(out)
        scored = sum(value.startswith("scored") for value in outcomes.values())
        results[name] = {"exit_status": status, "peak_rss_mb": peak and round(peak),
                         "seconds": round(seconds, 1), "files_scored": scored,
                         "error_rows": len(outcomes) - scored,
                         "last_output": output.strip().splitlines()[-3:],
                         "outcomes": {os.path.basename(k): v for k, v in outcomes.items()}}
    if args.each == "true":
        results["each"] = {}
        for name in sorted(os.listdir(corpus)):
            out = os.path.join(args.root, "out_each", name.encode("ascii", "replace").decode())
            status, peak, seconds, output = score_limited(
                args.workdir, [os.path.join(corpus, name)], out, args.memory_limit_mb,
                timeout_s=60)
            outcome = read_outcomes(out)
            results["each"][name] = {"exit_status": status, "peak_rss_mb": peak and round(peak),
                                     "seconds": round(seconds, 1),
                                     "outcome": next(iter(outcome.values()), None),
                                     "last_output": output.strip().splitlines()[-1:]}
    print(json.dumps(results, indent=1, ensure_ascii=True))


if __name__ == "__main__":
    main()
