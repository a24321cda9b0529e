"""The models: the registry and run configs, the NumPy, PyTorch and scikit-learn model code, and
the training code they share."""
