"""The registry's family names (medclf.models.registry.ModelSpec.family) -> their Family
(medclf.run.family). The one place a family is looked up: the lifecycle, predict, export, the
runner and the API ask ``family_of(model)`` (``family_for(config)`` for a finished run's config)
and never branch on a family or a model name. A run made of other runs rather than trained (an
ensemble) names its family in its config (``"family"``) instead of a registry model.

A family is named here as "module:Class" and imported on first use: a NumPy run need not load
PyTorch and scikit-learn (measured: importing torch alone takes 1-6 s, scikit-learn's
estimators 1-5 s on a busy machine). ``register_family`` adds one (a class or such a path).
"""

from __future__ import annotations

import importlib

from medclf.errors import ConfigError
from medclf.models.registry import MODELS
from medclf.run.family import Family

FAMILIES: dict[str, str | type[Family]] = {
    "numpy": "medclf.run.family_numpy:NumpyTrainer",
    "torch": "medclf.run.family_torch:TorchTrainer",
    "sklearn": "medclf.run.family_sklearn:SklearnTrainer",
    "ensemble": "medclf.run.family_ensemble:Ensemble",  # runs made of runs, never trained
}


def register_family(name: str, family: str | type[Family]) -> None:
    FAMILIES[name] = family


def family_named(name: str) -> type[Family]:
    entry = FAMILIES.get(name)
    if entry is None:
        known = ", ".join(FAMILIES)
        raise ConfigError(f"model family '{name}' is unknown; choose one of {known}")
    if isinstance(entry, str):
        module, cls = entry.split(":")
        FAMILIES[name] = entry = getattr(importlib.import_module(module), cls)
    return entry


def family_of(model: str) -> type[Family]:
    """The Family that trains, loads and exports ``model`` (a registry name)."""
    return family_named(MODELS[model].family)


def family_for(config: dict) -> type[Family]:
    """The Family of a run's config: the one it names, else its registry model's."""
    family = config.get("family")
    return family_named(family) if isinstance(family, str) else family_of(config["model"])
