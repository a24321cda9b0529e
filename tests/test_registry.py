import hashlib
import re
from pathlib import Path

import pytest

from medclf.data.registry import MD5S, REGISTRY, SIZED, SIZES, SPLITS, get_info
from medclf.errors import UnknownDatasetError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

TWELVE = {
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
}


# MedMNIST v3.0.2 info.py, typed in: (task, first label, classes, train/val/test, MD5, MD5_64)
SIX = {
    "organmnist3d": (
        "multi-class",
        "liver",
        11,
        (971, 161, 610),
        "a0c5a1ff56af4f155c46d46fbb45a2fe",
        "58a2205adf14a9d0a189cb06dc78bf10",
    ),
    "nodulemnist3d": (
        "binary-class",
        "benign",
        2,
        (1158, 165, 310),
        "8755a7e9e05a4d9ce80a24c3e7a256f3",
        "c47c5b7d457bf6332200d2ea6d64ecd8",
    ),
    "adrenalmnist3d": (
        "binary-class",
        "normal",
        2,
        (1188, 98, 298),
        "bbd3c5a5576322bc4cdfea780653b1ce",
        "17721accfe9fb005146a47d33bc54b2f",
    ),
    "fracturemnist3d": (
        "multi-class",
        "buckle rib fracture",
        3,
        (1027, 103, 240),
        "6aa7b0143a6b42da40027a9dda61302f",
        "f01d7e6316aedf4210da0da5b7437b42",
    ),
    "vesselmnist3d": (
        "binary-class",
        "vessel",
        2,
        (1335, 191, 382),
        "b41fd4f7e7e2feedddb201585ecafa1b",
        "6bb274a8846e1097066dcd64e2c4520f",
    ),
    "synapsemnist3d": (
        "binary-class",
        "inhibitory synapse",
        2,
        (1230, 177, 352),
        "1235b78a3cd6280881dd7850a78eadb6",
        "43bd14ebf3af9d3dd072446fedc14d5e",
    ),
}


def test_registry_holds_the_twelve_2d_and_six_3d_datasets():
    assert set(REGISTRY) == TWELVE | set(SIX)
    assert {n for n, i in REGISTRY.items() if i.dims == 3} == set(SIX)


@pytest.mark.parametrize("name", SIX)
def test_3d_entries_hold_medmnist_facts(name):
    task, first, n_classes, splits, md5, md5_64 = SIX[name]
    info = get_info(name)
    assert (info.task, info.labels[0], info.n_classes) == (task, first, n_classes)
    assert tuple(info.n_samples[s] for s in SPLITS) == splits
    assert (info.md5, get_info(name, 64).md5) == (md5, md5_64)
    assert info.dims == 3 and info.channels == 1 and info.image_shape == (28, 28, 28)
    assert get_info(name, 64).image_shape == (64, 64, 64)
    assert info.url == f"https://zenodo.org/records/10519652/files/{name}.npz?download=1"
    assert get_info(name, 64).filename == f"{name}_64.npz"
    with pytest.raises(UnknownDatasetError, match="no 224x224x224 files; choose a size of 28, 64"):
        get_info(name, 224)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no genuine MedMNIST files in {SHARED}")
@pytest.mark.parametrize("key", ["adrenalmnist3d", "adrenalmnist3d_64"])
def test_md5s_are_those_of_the_genuine_files(key):
    path = SHARED / f"{key}.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    name, _, size = key.partition("_")
    assert hashlib.md5(path.read_bytes()).hexdigest() == get_info(name, int(size or 28)).md5


@pytest.mark.parametrize("info", REGISTRY.values(), ids=lambda i: i.name)
def test_every_entry_is_complete(info):
    assert re.fullmatch(r"[0-9a-f]{32}", info.md5)
    assert info.url == f"https://zenodo.org/records/10519652/files/{info.filename}?download=1"
    assert info.filename == f"{info.name}.npz" and info.size == 28
    assert info.channels in (1, 3) and info.n_classes >= 2
    assert len(set(info.labels)) == info.n_classes
    assert all(info.n_samples[s] > 0 for s in SPLITS)
    assert info.licence == ("CC BY-NC 4.0" if info.name == "dermamnist" else "CC BY 4.0")
    assert info.task
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


def test_every_dataset_has_every_medmnist_plus_size():
    sized_2d = {(name, size) for name in TWELVE for size in SIZES}
    assert set(SIZED) == sized_2d | {(name, size) for name in SIX for size in (28, 64)}
    md5s = [info.md5 for info in SIZED.values()]
    assert len(set(md5s)) == 60 and all(re.fullmatch(r"[0-9a-f]{32}", m) for m in md5s)
    for (name, size), info in SIZED.items():
        assert info.md5 == MD5S[name][SIZES.index(size)] and info.size == size
        assert info.n_samples == REGISTRY[name].n_samples


def test_sized_entries_use_medmnist_file_names_and_urls():
    info = get_info("OCTMNIST", size=224)
    assert info.filename == "octmnist_224.npz" and info.key == "octmnist_224"
    assert info.md5 == "abc493b6d529d5de7569faaef2773ba3"
    assert info.url == "https://zenodo.org/records/10519652/files/octmnist_224.npz?download=1"
    assert info.image_shape == (224, 224)
    assert get_info("pathmnist", 64).image_shape == (64, 64, 3)
    assert get_info("breastmnist", 128).md5 == "363e4b3f8d712e9b5de15470a2aaadf1"


def test_organ_datasets_are_the_v3_rerelease_and_accept_v2_files():
    expected = {
        "organamnist": (
            "68e3f8846a6bd62f0c9bf841c0d9eacc",
            (34561, 6491, 17778),
            "866b832ed4eeba67bfb9edee1d5544e6",
        ),
        "organcmnist": (
            "b9ceb9546e10131b32923c5bbeaea2b1",
            (12975, 2392, 8216),
            "0afa5834fb105f7705a7d93372119a21",
        ),
        "organsmnist": (
            "9ab87b696fb54e2a387ebe992d6ed5f1",
            (13932, 2452, 8827),
            "e5c39f1af030238290b9557d9503af9d",
        ),
    }
    for name, (md5, sizes, v2) in expected.items():
        info = get_info(name)
        assert info.md5 == md5 and tuple(info.n_samples[s] for s in SPLITS) == sizes
        assert info.release(md5) == "v3" and info.release(v2) == "v2"
        assert get_info(name, 64).release(v2) is None  # v2 had no 64x64 files
    assert get_info("octmnist").release("0" * 32) is None


def test_unknown_size_lists_the_choices():
    with pytest.raises(UnknownDatasetError, match="no 32x32 files; choose a size of 28, 64, 12"):
        get_info("octmnist", 32)


def test_data_list_has_a_header_row():
    from click.testing import CliRunner

    from medclf.cli import cli

    lines = CliRunner().invoke(cli, ["data", "list"]).output.splitlines()
    assert lines[0].split()[:4] == ["dataset", "task", "classes", "kind"]
    assert len(lines) == 19 and lines[4].startswith("octmnist")
    kinds = {line.split()[0]: re.search(r" ([23]D) ", line)[1] for line in lines[1:]}
    assert kinds == {name: "3D" if name in SIX else "2D" for name in TWELVE | set(SIX)}
    assert "28, 64  " in lines[15] and lines[15].startswith("adrenalmnist3d")
