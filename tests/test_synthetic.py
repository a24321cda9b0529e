import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from medclf.data.features import make_features
from medclf.data.load import load_dataset
from medclf.data.synthetic import synthesize, write_synthetic
from medclf.errors import ConfigError


def test_layout_is_medmnist_exact():
    arrays = synthesize("octmnist", 0.01, seed=3)
    for split in ("train", "val", "test"):
        assert arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_images"].shape[1:] == (28, 28)
        assert arrays[f"{split}_labels"].dtype == np.uint8
        assert arrays[f"{split}_labels"].shape == (len(arrays[f"{split}_images"]), 1)


def test_class_proportions_follow_the_real_dataset():
    arrays = synthesize("octmnist", 0.1, seed=0)
    train = np.bincount(arrays["train_labels"][:, 0]) / len(arrays["train_labels"])
    real = np.array([33484, 10213, 7754, 46026]) / 97477
    np.testing.assert_allclose(train, real, atol=0.002)
    np.testing.assert_array_equal(np.bincount(arrays["test_labels"][:, 0]), [250] * 4)


def test_same_seed_same_file_other_seed_other_file():
    a, b, c = (synthesize("octmnist", 0.01, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a["train_images"], b["train_images"])
    assert not np.array_equal(a["train_images"], c["train_images"])


def test_rgb_dataset_has_three_channels(tmp_path):
    path = write_synthetic(tmp_path / "p.npz", "pathmnist", 0.01)
    ds = load_dataset(path)
    assert ds.name == "pathmnist" and ds.synthetic
    assert ds.train.images.shape[1:] == (28, 28, 3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_learnable_but_not_trivial(synth_file):
    f = make_features(load_dataset(synth_file))
    chance = np.bincount(f.y_val).max() / len(f.y_val)
    linear = LogisticRegression(max_iter=300).fit(f.X_train, f.y_train).score(f.X_val, f.y_val)
    mlp = MLPClassifier((64,), max_iter=200, random_state=0).fit(f.X_train, f.y_train)
    nonlinear = mlp.score(f.X_val, f.y_val)
    assert linear > chance + 0.1
    assert nonlinear > linear + 0.1


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="scale == 0"):
        synthesize("octmnist", 0)
    with pytest.raises(ConfigError, match="must end in .npz"):
        write_synthetic(tmp_path / "x.zip", "octmnist")


def test_medmnist_plus_size(tmp_path):
    from click.testing import CliRunner

    from medclf.cli import cli

    out = tmp_path / "s64.npz"
    args = ["data", "synth", "--like", "pneumoniamnist", "--size", "64", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--scale", "0.01"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    assert ds.info.size == 64 and ds.train.images.shape[1:] == (64, 64) and ds.synthetic


def test_images_are_made_in_bounded_chunks(monkeypatch):
    from medclf.data import synthetic

    whole = synthesize("octmnist", 0.01, seed=2, size=64)
    monkeypatch.setattr(synthetic, "CHUNK_BYTES", 64 * 64 * 8 * 100)  # 100 images per chunk
    chunked = synthesize("octmnist", 0.01, seed=2, size=64)
    assert chunked["train_images"].shape == whole["train_images"].shape
    np.testing.assert_array_equal(chunked["train_labels"], whole["train_labels"])
