"""Data: the embedded `phantom` dataset (`phantom.py`), the benchmark's real datasets and
the user's folders (`real.py`), their TFDS builders (`builders.py`), reading a prepared
dataset and the held-out split (`pipeline.py`), the user's files to score: images, DICOM
and NIfTI (`image_files.py`), the decoders that training and scoring share, each within
caps checked before decoding (`decoding.py`, `dicom_files.py`, `nifti_files.py`), and
the one image preprocessing after them (`preprocessing.py`).

May import: core.
Libraries: jax, nibabel, numpy, PIL, pydicom, tensorflow_datasets.
"""
