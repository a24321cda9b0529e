import re

import pytest

from medclf.data.registry import REGISTRY, SPLITS, get_info
from medclf.errors import UnknownDatasetError

TWELVE = {
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
}  # fmt: skip


def test_registry_holds_the_twelve_2d_datasets():
    assert set(REGISTRY) == TWELVE


@pytest.mark.parametrize("info", REGISTRY.values(), ids=lambda i: i.name)
def test_every_entry_is_complete(info):
    assert re.fullmatch(r"[0-9a-f]{32}", info.md5)
    assert info.url.startswith("https://zenodo.org/record/6496656/files/" + info.filename)
    assert info.filename == f"{info.name}.npz" and info.size == 28
    assert info.channels in (1, 3) and info.n_classes >= 2
    assert len(set(info.labels)) == info.n_classes
    assert all(info.n_samples[s] > 0 for s in SPLITS)
    assert info.licence == "CC BY 4.0" and info.task
    for split, counts in info.class_counts.items():
        assert len(counts) == info.n_classes and sum(counts) == info.n_samples[split]


def test_octmnist_facts_match_the_protocol():
    info = get_info("OCTMNIST")
    assert info.md5 == "c68d92d5b585d8d81f7112f81e2d0842"
    assert info.n_samples == {"train": 97477, "val": 10832, "test": 1000}
    assert info.class_counts["train"] == (33484, 10213, 7754, 46026)
    assert info.study_test_counts == (182, 55, 42, 250)
    assert info.image_shape == (28, 28)


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'mnist'.*octmnist"):
        get_info("mnist")
