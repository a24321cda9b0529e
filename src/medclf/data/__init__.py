"""Data layer: registry -> download/cache -> validate -> Dataset -> features."""

from medclf.data.features import Features, make_features, study_test_indices, to_features
from medclf.data.fetch import cache_root, dataset_path, download, find_cached, verify
from medclf.data.load import Dataset, Split, load_dataset
from medclf.data.registry import REGISTRY, SIZED, SIZES, DatasetInfo, get_info

__all__ = [
    "REGISTRY",
    "SIZED",
    "SIZES",
    "Dataset",
    "DatasetInfo",
    "Features",
    "Split",
    "cache_root",
    "dataset_path",
    "download",
    "find_cached",
    "get_info",
    "load_dataset",
    "make_features",
    "study_test_indices",
    "to_features",
    "verify",
]
