"""The published MedMNIST v2 benchmarks (test split, ACC and AUC), 2D and 3D, as data.

Source: Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical
image classification", Scientific Data 10, 41 (2023), Table 3 (doi:10.1038/s41597-022-01721-8),
as reproduced in the "Benchmarking" tables of https://medmnist.com/ (read from that site's source,
github.com/MedMNIST/medmnist.github.io, index.html and v2.html, which agree). Cross-checked against
the MedMNIST v2 rows that other projects quote for PathMNIST, ChestMNIST, OCTMNIST, RetinaMNIST,
TissueMNIST and OrganAMNIST, and the BreastMNIST / PneumoniaMNIST anchors in shared/data/README.md.

The ISBI'21 MedMNIST v1 paper has different numbers for the same methods (OCTMNIST auto-sklearn,
for instance, 0.595 / 0.883 there, 0.601 / 0.887 here); only v2's are kept. Every number is for
the official test split; "(28)" and "(224)" are the ResNets' input sizes, the others used 28x28.

The 3D table (``MEDMNIST_V2_3D``, same shape): the same paper, Table 4 (MedMNIST3D, 28x28x28
volumes, official test split), as reproduced in the "Benchmarking Performance on MedMNIST3D"
table of https://medmnist.com/ (github.com/MedMNIST/medmnist.github.io at 74c5d44, index.html
and v2.html, which agree cell for cell; the site prints AUC before ACC, here ACC comes first as
in the 2D table). Checked twice against that source, and against the AdrenalMNIST3D anchors in
shared/data/README.md (ResNet-18+3D 0.721 / 0.827, ResNet-50+3D 0.745 / 0.828, auto-sklearn
0.802 / 0.828). The paper's PDF itself could not be read here, only the site that quotes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

SOURCE = "MedMNIST v2 (Yang et al., Scientific Data 2023, Table 3; https://medmnist.com/)"


class Score(NamedTuple):
    acc: float
    auc: float


METHODS = (
    "ResNet-18 (28)",
    "ResNet-18 (224)",
    "ResNet-50 (28)",
    "ResNet-50 (224)",
    "auto-sklearn",
    "AutoKeras",
    "Google AutoML Vision",
)
BASELINE = "ResNet-18 (28)"  # what the benchmark's differences are taken against

NAMES = {
    "pathmnist": "PathMNIST",
    "chestmnist": "ChestMNIST",
    "dermamnist": "DermaMNIST",
    "octmnist": "OCTMNIST",
    "pneumoniamnist": "PneumoniaMNIST",
    "retinamnist": "RetinaMNIST",
    "breastmnist": "BreastMNIST",
    "bloodmnist": "BloodMNIST",
    "tissuemnist": "TissueMNIST",
    "organamnist": "OrganAMNIST",
    "organcmnist": "OrganCMNIST",
    "organsmnist": "OrganSMNIST",
}

# dataset -> one (test ACC, test AUC) per method, in the order of METHODS
_TABLE = {
    "pathmnist": (
        (0.907, 0.983),
        (0.909, 0.989),
        (0.911, 0.990),
        (0.892, 0.989),
        (0.716, 0.934),
        (0.834, 0.959),
        (0.728, 0.944),
    ),
    "chestmnist": (
        (0.947, 0.768),
        (0.947, 0.773),
        (0.947, 0.769),
        (0.948, 0.773),
        (0.779, 0.649),
        (0.937, 0.742),
        (0.948, 0.778),
    ),
    "dermamnist": (
        (0.735, 0.917),
        (0.754, 0.920),
        (0.735, 0.913),
        (0.731, 0.912),
        (0.719, 0.902),
        (0.749, 0.915),
        (0.768, 0.914),
    ),
    "octmnist": (
        (0.743, 0.943),
        (0.763, 0.958),
        (0.762, 0.952),
        (0.776, 0.958),
        (0.601, 0.887),
        (0.763, 0.955),
        (0.771, 0.963),
    ),
    "pneumoniamnist": (
        (0.854, 0.944),
        (0.864, 0.956),
        (0.854, 0.948),
        (0.884, 0.962),
        (0.855, 0.942),
        (0.878, 0.947),
        (0.946, 0.991),
    ),
    "retinamnist": (
        (0.524, 0.717),
        (0.493, 0.710),
        (0.528, 0.726),
        (0.511, 0.716),
        (0.515, 0.690),
        (0.503, 0.719),
        (0.531, 0.750),
    ),
    "breastmnist": (
        (0.863, 0.901),
        (0.833, 0.891),
        (0.812, 0.857),
        (0.842, 0.866),
        (0.803, 0.836),
        (0.831, 0.871),
        (0.861, 0.919),
    ),
    "bloodmnist": (
        (0.958, 0.998),
        (0.963, 0.998),
        (0.956, 0.997),
        (0.950, 0.997),
        (0.878, 0.984),
        (0.961, 0.998),
        (0.966, 0.998),
    ),
    "tissuemnist": (
        (0.676, 0.930),
        (0.681, 0.933),
        (0.680, 0.931),
        (0.680, 0.932),
        (0.532, 0.828),
        (0.703, 0.941),
        (0.673, 0.924),
    ),
    "organamnist": (
        (0.935, 0.997),
        (0.951, 0.998),
        (0.935, 0.997),
        (0.947, 0.998),
        (0.762, 0.963),
        (0.905, 0.994),
        (0.886, 0.990),
    ),
    "organcmnist": (
        (0.900, 0.992),
        (0.920, 0.994),
        (0.905, 0.992),
        (0.911, 0.993),
        (0.829, 0.976),
        (0.879, 0.990),
        (0.877, 0.988),
    ),
    "organsmnist": (
        (0.782, 0.972),
        (0.778, 0.974),
        (0.770, 0.972),
        (0.785, 0.975),
        (0.672, 0.945),
        (0.813, 0.974),
        (0.749, 0.964),
    ),
}

# dataset -> method -> Score
MEDMNIST_V2 = {
    d: dict(zip(METHODS, (Score(*s) for s in scores), strict=True)) for d, scores in _TABLE.items()
}


def published(dataset: str) -> dict[str, Score] | None:
    """The published scores for a dataset name (any case), or None if v2's 2D table lacks it."""
    return MEDMNIST_V2.get(dataset.lower())


SOURCE_3D = "MedMNIST v2 (Yang et al., Scientific Data 2023, Table 4; https://medmnist.com/)"

METHODS_3D = (
    "ResNet-18+2.5D",
    "ResNet-18+3D",
    "ResNet-18+ACS",
    "ResNet-50+2.5D",
    "ResNet-50+3D",
    "ResNet-50+ACS",
    "auto-sklearn",
    "AutoKeras",
)
BASELINE_3D = "ResNet-18+3D"

NAMES_3D = {
    "organmnist3d": "OrganMNIST3D",
    "nodulemnist3d": "NoduleMNIST3D",
    "fracturemnist3d": "FractureMNIST3D",
    "adrenalmnist3d": "AdrenalMNIST3D",
    "vesselmnist3d": "VesselMNIST3D",
    "synapsemnist3d": "SynapseMNIST3D",
}

# dataset -> one (test ACC, test AUC) per method, in the order of METHODS_3D
_TABLE_3D = {
    "organmnist3d": (
        (0.788, 0.977),
        (0.907, 0.996),
        (0.900, 0.994),
        (0.769, 0.974),
        (0.883, 0.994),
        (0.889, 0.994),
        (0.814, 0.977),
        (0.804, 0.979),
    ),
    "nodulemnist3d": (
        (0.835, 0.838),
        (0.844, 0.863),
        (0.847, 0.873),
        (0.848, 0.835),
        (0.847, 0.875),
        (0.841, 0.886),
        (0.874, 0.914),
        (0.834, 0.844),
    ),
    "fracturemnist3d": (
        (0.451, 0.587),
        (0.508, 0.712),
        (0.497, 0.714),
        (0.397, 0.552),
        (0.494, 0.725),
        (0.517, 0.750),
        (0.453, 0.628),
        (0.458, 0.642),
    ),
    "adrenalmnist3d": (
        (0.772, 0.718),
        (0.721, 0.827),
        (0.754, 0.839),
        (0.763, 0.732),
        (0.745, 0.828),
        (0.758, 0.828),
        (0.802, 0.828),
        (0.705, 0.804),
    ),
    "vesselmnist3d": (
        (0.846, 0.748),
        (0.877, 0.874),
        (0.928, 0.930),
        (0.877, 0.751),
        (0.918, 0.907),
        (0.858, 0.912),
        (0.915, 0.910),
        (0.894, 0.773),
    ),
    "synapsemnist3d": (
        (0.696, 0.634),
        (0.745, 0.820),
        (0.722, 0.705),
        (0.735, 0.669),
        (0.795, 0.851),
        (0.709, 0.719),
        (0.730, 0.631),
        (0.724, 0.538),
    ),
}

# dataset -> method -> Score
MEDMNIST_V2_3D = {
    d: dict(zip(METHODS_3D, (Score(*s) for s in scores), strict=True))
    for d, scores in _TABLE_3D.items()
}


def published_3d(dataset: str) -> dict[str, Score] | None:
    """The published 3D scores for a dataset name (any case), or None if v2's 3D table lacks
    it."""
    return MEDMNIST_V2_3D.get(dataset.lower())


@dataclass(frozen=True)
class Reference:
    """What a dataset's benchmark rows are set beside: its published table, the method the
    differences are taken against, the source and the dataset's printed name."""

    table: dict[str, Score]
    baseline: str
    source: str
    name: str


def reference(dataset: str) -> Reference | None:
    """The 2D table's entry (baseline ResNet-18 (28)) or the 3D table's (ResNet-18+3D) for a
    dataset name (any case), or None where MedMNIST v2 has neither."""
    key = dataset.lower()
    if key in MEDMNIST_V2:
        return Reference(MEDMNIST_V2[key], BASELINE, SOURCE, NAMES[key])
    if key in MEDMNIST_V2_3D:
        return Reference(MEDMNIST_V2_3D[key], BASELINE_3D, SOURCE_3D, NAMES_3D[key])
    return None
