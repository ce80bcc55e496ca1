"""The datasets' facts, one spec each: the MedIAnomaly-Data release's seven (and the
user's own folder), as the data pipeline, the configs, the methods and the sweep
planner read them.

Sizes are the release's: normal training images, and test images normal + abnormal
(BraTS2021: 828 + 1948, with pixel masks). Epochs are the reference's protocol.
`background`: brain MRI, whose black background the DAE's noise leaves alone.
"""

import dataclasses

DATA_ROOT = "~/MedIAnomaly-Data"
ZENODO = "https://zenodo.org/records/12677223"
ISIC_SITE = "https://challenge.isic-archive.com/data/#2018 (task 3)"


@dataclasses.dataclass(frozen=True)
class Spec:
    """A real dataset: its folder under DATA_ROOT, channels (None: the user's choice, 1
    unless the config sets 3), masks, layout, where to get it, and the protocol's
    facts."""

    folder: str
    title: str
    channels: int | None
    has_masks: bool
    layout: str  # "medad" | "brats" | "isic" | "c16" | "folder"
    source: str
    train_images: int = 0  # normal training images of the release (0: unknown)
    test_images: int = 0  # test images, normal and abnormal
    epochs: int = 0  # the reference's training epochs (0: none set)
    background: bool = False  # brain MRI on a black background


SPECS = {
    "rsna": Spec("RSNA", "RSNA", 1, False, "medad", ZENODO, 3851, 2000, 250),
    "vin": Spec("VinCXR", "VinDr-CXR", 1, False, "medad", ZENODO, 4000, 2000, 250),
    "brain": Spec("BrainTumor", "Brain Tumor", 1, False, "medad", ZENODO, 1000, 1200, 600,
                  background=True),
    "lag": Spec("LAG", "LAG", 1, False, "medad", ZENODO, 1500, 1622, 250),
    "brats": Spec("BraTS2021", "BraTS2021", 1, True, "brats", ZENODO, 4211, 2776, 250,
                  background=True),
    "isic": Spec("ISIC2018_Task3", "ISIC2018 task 3", 1, False, "isic", ISIC_SITE, 6705,
                 1512, 250),
    "c16": Spec("Camelyon16", "Camelyon16", 3, False, "c16", ZENODO, 5088, 2233, 250),
    "folder": Spec("", "your own images", None, False, "folder", ""),
}
BENCHMARK = tuple(name for name, spec in SPECS.items() if spec.epochs)  # the release's seven
