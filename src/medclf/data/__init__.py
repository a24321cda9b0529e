"""Data layer: registry -> download/cache -> validate -> Dataset -> features."""

from medclf.data.features import Features, make_features, study_test_indices, to_features
from medclf.data.fetch import cache_root, dataset_path, download, verify
from medclf.data.load import Dataset, Split, load_dataset
from medclf.data.registry import REGISTRY, DatasetInfo, get_info

__all__ = [
    "REGISTRY",
    "Dataset",
    "DatasetInfo",
    "Features",
    "Split",
    "cache_root",
    "dataset_path",
    "download",
    "get_info",
    "load_dataset",
    "make_features",
    "study_test_indices",
    "to_features",
    "verify",
]
