"""Facts about each MedMNIST dataset (12 2D, 6 3D), one entry per dataset and image size.

Everything else in medclf reads these entries instead of branching on dataset names. The facts
come from the MedMNIST project: Zenodo record 10519652 (MedMNIST v3.0.2), as published in the
``medmnist`` package's ``info.py`` 3.0.2. Each 2D dataset exists at 28x28 (``name.npz``) and, as
MedMNIST+, at 64, 128 and 224 (``name_64.npz``, ...); each 3D dataset (MedMNIST3D, one-channel
volumes) at 28x28x28 and 64x64x64 only. Every size has its own MD5.

The 28x28 files of v3 are byte-identical to v2 (Zenodo 6496656) except OrganA/C/SMNIST, which
were re-released without blank images. A genuine v2 file of those three is still accepted
(``legacy_md5s``); it is then reported as the v2 release, and its split sizes are v2's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from medclf.errors import UnknownDatasetError, did_you_mean

ZENODO = "https://zenodo.org/records/10519652/files"
LICENCE = "CC BY 4.0"
SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
SIZES_3D = (28, 64)  # MedMNIST+ has no 128- or 224-voxel volumes


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
    # MD5s of earlier genuine releases that are still accepted (the v2 Organ{A,C,S}MNIST files).
    legacy_md5s: tuple[str, ...] = ()
    dims: int = 2  # 2 for images (H, W[, C]); 3 for MedMNIST3D's one-channel volumes (D, H, W)

    @property
    def key(self) -> str:
        """The file name without .npz: ``octmnist`` or ``octmnist_64``."""
        return self.name if self.size == 28 else f"{self.name}_{self.size}"

    @property
    def filename(self) -> str:
        return f"{self.key}.npz"

    @property
    def url(self) -> str:
        return f"{ZENODO}/{self.filename}?download=1"

    def release(self, md5: str) -> str | None:
        """'v3' for the current file's MD5, 'v2' for an accepted older one, else None."""
        return "v3" if md5 == self.md5 else "v2" if md5 in self.legacy_md5s else None

    @property
    def sizes(self) -> tuple[int, ...]:
        """The image sides MedMNIST publishes this dataset at."""
        return SIZES if self.dims == 2 else SIZES_3D

    @property
    def kind(self) -> str:
        return f"{self.dims}D"

    @property
    def cube(self) -> str:
        """'28x28' for an image, '28x28x28' for a volume."""
        return "x".join([str(self.size)] * self.dims)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        return self.task.startswith("multi-label")

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(H, W), (H, W, C) or, for a 3D dataset, (D, H, W): one sample as stored in the .npz."""
        side = (self.size,) * self.dims
        return side if self.channels == 1 else (*side, self.channels)


ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)


def _entries() -> list[DatasetInfo]:
    def n(train: int, val: int, test: int) -> dict[str, int]:
        return {"train": train, "val": val, "test": test}

    return [
        DatasetInfo(
            "pathmnist",
            "a8b06965200029087d5bd730944a56c1",
            "multi-class",
            (
                "adipose",
                "background",
                "debris",
                "lymphocytes",
                "mucus",
                "smooth muscle",
                "normal colon mucosa",
                "cancer-associated stroma",
                "colorectal adenocarcinoma epithelium",
            ),
            3,
            n(89996, 10004, 7180),
        ),
        DatasetInfo(
            "chestmnist",
            "02c8a6516a18b556561a56cbdd36c4a8",
            "multi-label, binary-class",
            (
                "atelectasis",
                "cardiomegaly",
                "effusion",
                "infiltration",
                "mass",
                "nodule",
                "pneumonia",
                "pneumothorax",
                "consolidation",
                "edema",
                "emphysema",
                "fibrosis",
                "pleural",
                "hernia",
            ),
            1,
            n(78468, 11219, 22433),
        ),
        DatasetInfo(
            "dermamnist",
            "0744692d530f8e62ec473284d019b0c7",
            "multi-class",
            (
                "actinic keratoses and intraepithelial carcinoma",
                "basal cell carcinoma",
                "benign keratosis-like lesions",
                "dermatofibroma",
                "melanoma",
                "melanocytic nevi",
                "vascular lesions",
            ),
            3,
            n(7007, 1003, 2005),
            licence="CC BY-NC 4.0",
        ),
        DatasetInfo(
            "octmnist",
            "c68d92d5b585d8d81f7112f81e2d0842",
            "multi-class",
            ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
            1,
            n(97477, 10832, 1000),
            class_counts={"train": (33484, 10213, 7754, 46026), "test": (250, 250, 250, 250)},
            study_test_counts=(182, 55, 42, 250),
        ),
        DatasetInfo(
            "pneumoniamnist",
            "28209eda62fecd6e6a2d98b1501bb15f",
            "binary-class",
            ("normal", "pneumonia"),
            1,
            n(4708, 524, 624),
        ),
        DatasetInfo(
            "retinamnist",
            "bd4c0672f1bba3e3a89f0e4e876791e4",
            "ordinal-regression",
            ("0", "1", "2", "3", "4"),
            3,
            n(1080, 120, 400),
        ),
        DatasetInfo(
            "breastmnist",
            "750601b1f35ba3300ea97c75c52ff8f6",
            "binary-class",
            ("malignant", "normal, benign"),
            1,
            n(546, 78, 156),
        ),
        DatasetInfo(
            "bloodmnist",
            "7053d0359d879ad8a5505303e11de1dc",
            "multi-class",
            (
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ),
            3,
            n(11959, 1712, 3421),
        ),
        DatasetInfo(
            "tissuemnist",
            "ebe78ee8b05294063de985d821c1c34b",
            "multi-class",
            (
                "Collecting Duct, Connecting Tubule",
                "Distal Convoluted Tubule",
                "Glomerular endothelial cells",
                "Interstitial endothelial cells",
                "Leukocytes",
                "Podocytes",
                "Proximal Tubule Segments",
                "Thick Ascending Limb",
            ),
            1,
            n(165466, 23640, 47280),
        ),
        # v3 re-release (blank images removed); v2 had 34,581/6,491/17,778 images.
        DatasetInfo(
            "organamnist",
            "68e3f8846a6bd62f0c9bf841c0d9eacc",
            "multi-class",
            ORGANS,
            1,
            n(34561, 6491, 17778),
            legacy_md5s=("866b832ed4eeba67bfb9edee1d5544e6",),
        ),
        # v2: 13,000/2,392/8,268.
        DatasetInfo(
            "organcmnist",
            "b9ceb9546e10131b32923c5bbeaea2b1",
            "multi-class",
            ORGANS,
            1,
            n(12975, 2392, 8216),
            legacy_md5s=("0afa5834fb105f7705a7d93372119a21",),
        ),
        # v2: 13,940/2,452/8,829.
        DatasetInfo(
            "organsmnist",
            "9ab87b696fb54e2a387ebe992d6ed5f1",
            "multi-class",
            ORGANS,
            1,
            n(13932, 2452, 8827),
            legacy_md5s=("e5c39f1af030238290b9557d9503af9d",),
        ),
        *_entries_3d(),
    ]


def _entries_3d() -> list[DatasetInfo]:
    """MedMNIST3D: (n, 28, 28, 28) uint8 volumes, one channel. Their class counts are not in
    info.py; AdrenalMNIST3D's are counted in the genuine file (v3.0.2, MD5 as below)."""

    def n(train: int, val: int, test: int) -> dict[str, int]:
        return {"train": train, "val": val, "test": test}

    return [
        DatasetInfo(
            "organmnist3d",
            "a0c5a1ff56af4f155c46d46fbb45a2fe",
            "multi-class",
            # MedMNIST's order for the 3D file, not Organ{A,C,S}MNIST's alphabetical one
            (
                "liver",
                "kidney-right",
                "kidney-left",
                "femur-right",
                "femur-left",
                "bladder",
                "heart",
                "lung-right",
                "lung-left",
                "spleen",
                "pancreas",
            ),
            1,
            n(971, 161, 610),
            dims=3,
        ),
        DatasetInfo(
            "nodulemnist3d",
            "8755a7e9e05a4d9ce80a24c3e7a256f3",
            "binary-class",
            ("benign", "malignant"),
            1,
            n(1158, 165, 310),
            dims=3,
        ),
        DatasetInfo(
            "adrenalmnist3d",
            "bbd3c5a5576322bc4cdfea780653b1ce",
            "binary-class",
            ("normal", "hyperplasia"),
            1,
            n(1188, 98, 298),
            class_counts={"train": (929, 259), "val": (76, 22), "test": (229, 69)},
            dims=3,
        ),
        DatasetInfo(
            "fracturemnist3d",
            "6aa7b0143a6b42da40027a9dda61302f",
            "multi-class",
            ("buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"),
            1,
            n(1027, 103, 240),
            dims=3,
        ),
        DatasetInfo(
            "vesselmnist3d",
            "b41fd4f7e7e2feedddb201585ecafa1b",
            "binary-class",
            ("vessel", "aneurysm"),
            1,
            n(1335, 191, 382),
            dims=3,
        ),
        DatasetInfo(
            "synapsemnist3d",
            "1235b78a3cd6280881dd7850a78eadb6",
            "binary-class",
            ("inhibitory synapse", "excitatory synapse"),
            1,
            n(1230, 177, 352),
            dims=3,
        ),
    ]


# MD5 of each file at each of the dataset's sizes: 28, 64, 128 and 224 for 2D, 28 and 64 for 3D
# (MedMNIST v3.0.2, info.py).
MD5S = {
    "pathmnist": (
        "a8b06965200029087d5bd730944a56c1",
        "55aa9c1e0525abe5a6b9d8343a507616",
        "ac42d08fb904d92c244187169d1fd1d9",
        "2c51a510bcdc9cf8ddb2af93af1eadec",
    ),
    "chestmnist": (
        "02c8a6516a18b556561a56cbdd36c4a8",
        "9de6cd0b934ebb5b7426cfba5efbae16",
        "db107e5590b27930b62dbaf558aebee3",
        "45bd33e6f06c3e8cdb481c74a89152aa",
    ),
    "dermamnist": (
        "0744692d530f8e62ec473284d019b0c7",
        "b70a2f5635c6199aeaa28c31d7202e1f",
        "2defd784463fa5243564e855ed717de1",
        "8974907d8e169bef5f5b96bc506ae45d",
    ),
    "octmnist": (
        "c68d92d5b585d8d81f7112f81e2d0842",
        "e229e9440236b774d9f0dfef9d07bdaf",
        "0a97e76651ace45c5d943ee3f65b63ae",
        "abc493b6d529d5de7569faaef2773ba3",
    ),
    "pneumoniamnist": (
        "28209eda62fecd6e6a2d98b1501bb15f",
        "8f4eceb4ccffa70c672198ea285246c6",
        "05b46931834c231683c68f40c47b2971",
        "d6a3c71de1b945ea11211b03746c1fe1",
    ),
    "retinamnist": (
        "bd4c0672f1bba3e3a89f0e4e876791e4",
        "afda852cc34dcda56f86ad2b2457dbcc",
        "e48e916a24454daf90583d4e6efb1a18",
        "eae7e3b6f3fcbda4ae613ebdcbe35348",
    ),
    "breastmnist": (
        "750601b1f35ba3300ea97c75c52ff8f6",
        "742edef2a1fd1524b2efff4bd7ba9364",
        "363e4b3f8d712e9b5de15470a2aaadf1",
        "b56378a6eefa9fed602bb16d192d4c8b",
    ),
    "bloodmnist": (
        "7053d0359d879ad8a5505303e11de1dc",
        "2b94928a2ae4916078ca51e05b6b800b",
        "adace1e0ed228fccda1f39692059dd4c",
        "b718ff6835fcbdb22ba9eacccd7b2601",
    ),
    "tissuemnist": (
        "ebe78ee8b05294063de985d821c1c34b",
        "123ece2eba09d0aa5d698fda57103344",
        "61b955355d7425a89687b06cca3ce0c2",
        "b077128c4a949f0a4eb01517f9037b9c",
    ),
    "organamnist": (
        "68e3f8846a6bd62f0c9bf841c0d9eacc",
        "2dcccc29b88e6da5a01161ef20cda288",
        "eeae80d0a227a8d099027e1b3cfd3b60",
        "50747347e05c87dd3aaf92c49f9f3170",
    ),
    "organcmnist": (
        "b9ceb9546e10131b32923c5bbeaea2b1",
        "3ce34a8724ea6f548e6db4744d03b6a9",
        "773c1f009daa3fe5d9a2a201b2a7ed94",
        "050f5e875dc056f6768abf94ec9995d1",
    ),
    "organsmnist": (
        "9ab87b696fb54e2a387ebe992d6ed5f1",
        "53a6d115339d874c25e309a994ff46d3",
        "ded0c5fa01a95dc4978b956f613e9b8e",
        "b354719e553fbbb2513d5533f52a4cb1",
    ),
    "organmnist3d": ("a0c5a1ff56af4f155c46d46fbb45a2fe", "58a2205adf14a9d0a189cb06dc78bf10"),
    "nodulemnist3d": ("8755a7e9e05a4d9ce80a24c3e7a256f3", "c47c5b7d457bf6332200d2ea6d64ecd8"),
    "adrenalmnist3d": ("bbd3c5a5576322bc4cdfea780653b1ce", "17721accfe9fb005146a47d33bc54b2f"),
    "fracturemnist3d": ("6aa7b0143a6b42da40027a9dda61302f", "f01d7e6316aedf4210da0da5b7437b42"),
    "vesselmnist3d": ("b41fd4f7e7e2feedddb201585ecafa1b", "6bb274a8846e1097066dcd64e2c4520f"),
    "synapsemnist3d": ("1235b78a3cd6280881dd7850a78eadb6", "43bd14ebf3af9d3dd072446fedc14d5e"),
}

# The 28x28 entry of each dataset, by name (the default everywhere).
REGISTRY: dict[str, DatasetInfo] = {info.name: info for info in _entries()}
# Every entry, by (name, size).
SIZED: dict[tuple[str, int], DatasetInfo] = {
    (name, size): info if size == 28 else replace(info, size=size, md5=md5, legacy_md5s=())
    for name, info in REGISTRY.items()
    for size, md5 in zip(info.sizes, MD5S[name], strict=True)
}


def get_info(name: str, size: int = 28) -> DatasetInfo:
    """The registry entry for ``name`` (case-insensitive) at image side ``size``."""
    if name.lower() not in REGISTRY:
        known = ", ".join(REGISTRY)
        raise UnknownDatasetError(
            f"unknown dataset '{name}'{did_you_mean(name.lower(), REGISTRY)}; choose one of "
            f"{known}, or pass the path of a local .npz"
        )
    info = REGISTRY[name.lower()]
    if size not in info.sizes:
        side = "x".join([str(size)] * info.dims)
        which = "MedMNIST" if info.dims == 2 else f"MedMNIST3D ({info.name})"
        raise UnknownDatasetError(
            f"{which} has no {side} files; choose a size of {', '.join(map(str, info.sizes))}"
        )
    return SIZED[name.lower(), size]
