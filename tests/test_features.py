import numpy as np
import pytest

from conftest import medmnist_arrays, write_npz
from medclf.data.features import make_features, study_test_indices, to_features
from medclf.data.load import load_dataset
from medclf.errors import ConfigError, DataError


def test_pixels_are_divided_by_256_with_optional_bias():
    images = np.array([[[0, 128], [255, 64]]], dtype=np.uint8)
    X = to_features(images, bias=True)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, [[0, 0.5, 255 / 256, 0.25, 1.0]])
    assert to_features(images, dtype=np.float32).dtype == np.float32


def test_study_subset_picks_the_first_rows_of_each_class_in_class_order():
    labels = np.array([3, 0, 1, 0, 2, 3, 1, 0, 2, 3])
    rows = study_test_indices(labels, (2, 1, 2, 3))
    # class 0 rows 1, 3; class 1 row 2; class 2 rows 4, 8; class 3 rows 0, 5, 9
    np.testing.assert_array_equal(rows, [1, 3, 2, 4, 8, 0, 5, 9])


def test_study_subset_of_octmnist_has_529_images_mirroring_the_train_mix(tmp_path):
    rng = np.random.default_rng(1)
    test_labels = rng.permutation(np.repeat(np.arange(4), 250))
    path = write_npz(tmp_path / "octmnist.npz", medmnist_arrays(test_labels=test_labels))
    ds = load_dataset(path)
    f = make_features(ds)  # auto -> study for OCTMNIST
    assert f.test_split == "study" and len(f.y_test) == 529
    np.testing.assert_array_equal(np.bincount(f.y_test), [182, 55, 42, 250])
    assert np.all(np.diff(f.y_test) >= 0)  # concatenated in class order
    # Independent oracle: a plain loop over the file in order.
    expected = [
        i
        for c, k in enumerate((182, 55, 42, 250))
        for i in [j for j, y in enumerate(test_labels) if y == c][:k]
    ]
    np.testing.assert_array_equal(f.X_test, to_features(ds.test.images[expected]))
    official = make_features(ds, test_split="official")
    assert len(official.y_test) == 1000 and official.test_split == "official"


def test_study_subset_needs_enough_images(tmp_path):
    path = write_npz(tmp_path / "octmnist.npz", medmnist_arrays(n=(40, 12, 100)))
    with pytest.raises(DataError, match="use --test-split official"):
        make_features(load_dataset(path))


def test_other_datasets_default_to_the_official_split(tmp_path):
    path = write_npz(tmp_path / "pneumoniamnist.npz", medmnist_arrays(n=(20, 5, 7), n_classes=2))
    ds = load_dataset(path)
    assert make_features(ds).test_split == "official"
    with pytest.raises(ConfigError, match="no study test subset"):
        make_features(ds, test_split="study")
