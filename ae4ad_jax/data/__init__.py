"""Data: the embedded `phantom` dataset (`phantom.py`), the benchmark's real datasets and
the user's folders (`real.py`), their TFDS builders (`builders.py`), reading a prepared
dataset and the held-out split (`pipeline.py`), the user's files to score: images, DICOM
and NIfTI (`image_files.py`), and the one image preprocessing that training and scoring
share (`preprocessing.py`).

May import: core.
"""
