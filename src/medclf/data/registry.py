"""Facts about each MedMNIST v2 2D dataset, one entry per dataset and image size.

Everything else in medclf reads these entries instead of branching on dataset names. The facts
come from the MedMNIST project (Zenodo record 6496656); larger MedMNIST+ sizes are added as
entries with their own ``size``, URL and MD5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medclf.errors import UnknownDatasetError

ZENODO = "https://zenodo.org/record/6496656/files"
LICENCE = "CC BY 4.0"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    md5: str
    task: str  # "multi-class", "binary-class", "ordinal-regression" or "multi-label, binary-class"
    labels: tuple[str, ...]
    channels: int
    n_samples: dict[str, int]
    size: int = 28  # image side in pixels
    licence: str = LICENCE
    # Per-class counts of a split where they are published (used by `data synth`).
    class_counts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # First k images of each class of the official test split, in class order (the study's subset).
    study_test_counts: tuple[int, ...] | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.npz" if self.size == 28 else f"{self.name}_{self.size}.npz"

    @property
    def url(self) -> str:
        return f"{ZENODO}/{self.filename}?download=1"

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        return self.task.startswith("multi-label")

    @property
    def image_shape(self) -> tuple[int, ...]:
        side = (self.size, self.size)
        return side if self.channels == 1 else (*side, self.channels)


ORGANS = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
    "lung-left", "lung-right", "pancreas", "spleen",
)  # fmt: skip


def _entries() -> list[DatasetInfo]:
    def n(train: int, val: int, test: int) -> dict[str, int]:
        return {"train": train, "val": val, "test": test}

    return [
        DatasetInfo(
            "pathmnist", "a8b06965200029087d5bd730944a56c1", "multi-class",
            ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
             "normal colon mucosa", "cancer-associated stroma",
             "colorectal adenocarcinoma epithelium"),
            3, n(89996, 10004, 7180),
        ),
        DatasetInfo(
            "chestmnist", "02c8a6516a18b556561a56cbdd36c4a8", "multi-label, binary-class",
            ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
             "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
             "pleural", "hernia"),
            1, n(78468, 11219, 22433),
        ),
        DatasetInfo(
            "dermamnist", "0744692d530f8e62ec473284d019b0c7", "multi-class",
            ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
             "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
             "vascular lesions"),
            3, n(7007, 1003, 2005),
        ),
        DatasetInfo(
            "octmnist", "c68d92d5b585d8d81f7112f81e2d0842", "multi-class",
            ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
            1, n(97477, 10832, 1000),
            class_counts={"train": (33484, 10213, 7754, 46026), "test": (250, 250, 250, 250)},
            study_test_counts=(182, 55, 42, 250),
        ),
        DatasetInfo(
            "pneumoniamnist", "28209eda62fecd6e6a2d98b1501bb15f", "binary-class",
            ("normal", "pneumonia"), 1, n(4708, 524, 624),
        ),
        DatasetInfo(
            "retinamnist", "bd4c0672f1bba3e3a89f0e4e876791e4", "ordinal-regression",
            ("0", "1", "2", "3", "4"), 3, n(1080, 120, 400),
        ),
        DatasetInfo(
            "breastmnist", "750601b1f35ba3300ea97c75c52ff8f6", "binary-class",
            ("malignant", "normal, benign"), 1, n(546, 78, 156),
        ),
        DatasetInfo(
            "bloodmnist", "7053d0359d879ad8a5505303e11de1dc", "multi-class",
            ("basophil", "eosinophil", "erythroblast",
             "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
             "lymphocyte", "monocyte", "neutrophil", "platelet"),
            3, n(11959, 1712, 3421),
        ),
        DatasetInfo(
            "tissuemnist", "ebe78ee8b05294063de985d821c1c34b", "multi-class",
            ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
             "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
             "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb"),
            1, n(165466, 23640, 47280),
        ),
        DatasetInfo(
            "organamnist", "866b832ed4eeba67bfb9edee1d5544e6", "multi-class", ORGANS,
            1, n(34581, 6491, 17778),
        ),
        DatasetInfo(
            "organcmnist", "0afa5834fb105f7705a7d93372119a21", "multi-class", ORGANS,
            1, n(13000, 2392, 8268),
        ),
        DatasetInfo(
            "organsmnist", "e5c39f1af030238290b9557d9503af9d", "multi-class", ORGANS,
            1, n(13940, 2452, 8829),
        ),
    ]  # fmt: skip


REGISTRY: dict[str, DatasetInfo] = {info.name: info for info in _entries()}


def get_info(name: str) -> DatasetInfo:
    """The registry entry for ``name`` (case-insensitive)."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise UnknownDatasetError(
            f"unknown dataset '{name}'; choose one of {known}, or pass the path of a local .npz"
        ) from None
