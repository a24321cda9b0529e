"""medclf: classic and neural classifiers on MedMNIST, from scratch and in PyTorch."""

__version__ = "0.1.0"
