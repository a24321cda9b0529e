"""A run's config: the settings every run has (COMMON), each model's defaults (its registry
entry, medclf.models.registry), and the checks every value passes.

A run's config is a flat dict: ``{"model": name, **COMMON, **DEFAULTS[name], **overrides}``.
Only keys a model uses appear in its config, so equal configs mean equal runs (the reproduce
runner keys runs by a hash of it).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping

from medclf.errors import ConfigError, SettingError, did_you_mean
from medclf.limits import MAX_SEED
from medclf.models.registry import MODELS

# what --precision accepts; models.training.precision checks the hardware and resolves auto
PRECISIONS = ("fp32", "bf16", "auto")

COMMON = {
    "dataset": "octmnist",
    "size": 28,  # image side of a named dataset (MedMNIST+ adds 64, 128 and 224)
    "test_split": "auto",  # OCTMNIST: the study's 529-image subset; others: official
    "seed": 42,  # the study seeds every generator with 42
    "train_fraction": 1.0,  # < 1 trains and validates on the first part of each split (--quick)
    "select": "last",  # the epoch whose model is kept: the study keeps the last one
    "patience": 0,  # stop after this many epochs without a better selection metric (0: never)
}
VALIDATION_METRICS = ("val_auc", "val_acc", "val_loss")  # what --select and tune's --metric watch
SELECT = (*VALIDATION_METRICS, "last")
DTYPES = ("float64", "float32")
TEST_SPLITS = ("auto", "study", "official")


class Defaults(Mapping):
    """Each model's own defaults, read from its registry entry when asked (so a model
    registered later has them too)."""

    def __getitem__(self, model: str) -> dict:
        return MODELS[model].defaults

    def __iter__(self):
        return iter(MODELS)

    def __len__(self) -> int:
        return len(MODELS)


DEFAULTS = Defaults()
ACTIVATIONS = ("relu", "tanh")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "paper", "cosine")
AUGMENTS = ("none", "auto", "flip", "crop", "flip+crop")


# A refused value is shown in short: YAML aliases can make one of millions of items.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring = 2, 4, 4, 80


def make_config(model: str, **overrides) -> dict:
    """Full config of a run; ``None`` overrides keep the default. Checks every value."""
    if not isinstance(model, str) or model not in DEFAULTS:
        raise SettingError(
            f"unknown model {model!r}{did_you_mean(model, MODELS)}; choose one of "
            f"{', '.join(MODELS)}"
        )
    config = {"model": model, **COMMON, **DEFAULTS[model]}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in config:
            hint = did_you_mean(key, config)
            names = ", ".join(k for k in config if k != "model")
            having = [m for m, spec in MODELS.items() if key in spec.defaults]
            where = f" (a setting of {', '.join(having)} only)" if having else ""
            raise SettingError(
                f"{model} has no setting {key!r}{where}{hint}; its settings are {names}"
            )
        config[key] = value
    check_config(config)
    return config


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(c: dict) -> None:
    rules = [
        ("epochs", lambda v: _integer(v) and 1 <= v <= 100_000, "must be an integer in 1..100000"),
        ("lr", lambda v: _finite(v) and v > 0, "must be > 0 and finite"),
        ("batch_size", lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
        ("hidden_size", lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
        ("layers", lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
        ("dropout", lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
        ("l2", lambda v: _finite(v) and v >= 0, "must be >= 0 and finite"),
        ("init_std", lambda v: _finite(v) and v >= 0, "must be >= 0 and finite"),
        ("train_fraction", lambda v: _finite(v) and 0 < v <= 1, "must be in (0, 1]"),
        (
            "seed",
            lambda v: _integer(v) and 0 <= v <= MAX_SEED,
            f"must be an integer in 0..{MAX_SEED}",
        ),
        ("activation", lambda v: v in ACTIVATIONS, f"must be one of {ACTIVATIONS}"),
        ("optimizer", lambda v: v in OPTIMIZERS, f"must be one of {OPTIMIZERS}"),
        ("size", lambda v: _integer(v) and v in (28, 64, 128, 224), "must be 28, 64, 128 or 224"),
        ("width", lambda v: _integer(v) and 1 <= v <= 1024, "must be an integer in 1..1024"),
        ("schedule", lambda v: v in SCHEDULES, f"must be one of {SCHEDULES}"),
        ("augment", lambda v: v in AUGMENTS, f"must be one of {AUGMENTS}"),
        ("select", lambda v: v in SELECT, f"must be one of {SELECT}"),
        ("patience", lambda v: _integer(v) and v >= 0, "must be an integer >= 0"),
        ("dataset", lambda v: isinstance(v, str) and v != "", "must be a dataset name or path"),
        ("dtype", lambda v: v in DTYPES, "must be float32 or float64"),
        ("precision", lambda v: v in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
        ("compile", lambda v: isinstance(v, bool), "must be true or false"),
        # classic baselines (medclf.models.classic)
        ("C", lambda v: _finite(v) and v > 0, "must be > 0 and finite"),
        ("max_iter", lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
        (
            "n_estimators",
            lambda v: _integer(v) and 1 <= v <= 100_000,
            "must be an integer in 1..100000",
        ),
        ("min_samples_leaf", lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
        ("learning_rate", lambda v: _finite(v) and v > 0, "must be > 0 and finite"),
        ("max_leaf_nodes", lambda v: _integer(v) and v >= 2, "must be an integer >= 2"),
        ("n_neighbors", lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
        ("pca_components", lambda v: _integer(v) and v >= 0, "must be an integer >= 0"),
        (
            "gamma",
            lambda v: v in ("scale", "auto") or (_finite(v) and v > 0),
            "must be 'scale', 'auto' or a number > 0",
        ),
        ("test_split", lambda v: v in TEST_SPLITS, "must be auto, study or official"),
    ]
    for key, ok, rule in rules:
        if key in c and not ok(c[key]):
            raise SettingError(f"{key} == {_SHORT.repr(c[key])}, {rule}")
    if c.get("patience") and c.get("select") == "last":
        raise SettingError(
            "patience needs a metric to watch, but select == 'last'; add "
            "--select val_auc (or val_acc, val_loss)"
        )


class DuplicateKey(ValueError):
    """A config file names one setting twice: which one wins is not the user's intent."""


def unique_keys(pairs: list) -> dict:
    """json's object_pairs_hook that refuses a key given twice (json keeps the last)."""
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise DuplicateKey(f"{_SHORT.repr(twice)} is given twice; keep one")
    return dict(pairs)


def unique_keys_loader(yaml):
    """PyYAML's SafeLoader, refusing a mapping key given twice (PyYAML keeps the last)."""

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            hashable = [k for k in keys if isinstance(k, str | int | float | bool)]
            twice = next((k for k in hashable if hashable.count(k) > 1), None)
            if twice is not None:
                raise DuplicateKey(f"{_SHORT.repr(twice)} is given twice; keep one")
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_config_file(path, model: str | None = None) -> tuple[str, dict]:
    """``(model, settings)`` from a JSON or YAML file holding a config (a run's config.json,
    ``medclf tune``'s best_config.json or one written by hand: at least "model", unless
    ``model`` names it). Checks every value; each problem is one ConfigError line."""
    import json
    import re
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        why = "not found" if isinstance(err, FileNotFoundError) else "unreadable"
        raise ConfigError(f"config file {path}: {why}; give a JSON or YAML file") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"reading {path} needs PyYAML (pip install pyyaml); or write the config as JSON"
            ) from None
        try:
            data = yaml.load(text, Loader=unique_keys_loader(yaml))
        except DuplicateKey as err:
            raise SettingError(f"config file {path}: {err}") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}" if where else ""
            raise ConfigError(f"config file {path} is not valid YAML{at}") from None
        except RecursionError:  # nested too deeply to be a config
            raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
        if isinstance(data, dict):  # YAML 1.1 reads 1e-3 (no dot) as a string
            sci = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
            data = {
                k: float(v) if isinstance(v, str) and sci.fullmatch(v) else v
                for k, v in data.items()
            }
    else:
        try:
            data = json.loads(text, object_pairs_hook=unique_keys)
        except DuplicateKey as err:
            raise SettingError(f"config file {path}: {err}") from None
        except (ValueError, RecursionError) as err:  # RecursionError: nested too deeply
            raise ConfigError(
                f"config file {path} is not valid JSON ({err}); YAML files must "
                "end in .yaml or .yml"
            ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold one object of settings, "
            f'like {{"model": "torch-ffn", "lr": 0.1}}'
        )
    odd = next((k for k in data if not isinstance(k, str)), None)
    if odd is not None:
        raise SettingError(
            f"config file {path}: the key {odd!r} is not a setting name; names are text, like lr"
        )
    settings = dict(data)
    named = settings.pop("model", None)
    if named is not None and not isinstance(named, str):
        shown = _SHORT.repr(named)
        raise SettingError(f"config file {path}: model == {shown}, must be one name (text)")
    if named is not None and model is not None and named != model:
        raise ConfigError(
            f"the MODEL argument is {model} but {path} holds a {named} config; "
            "drop the argument or give a matching file"
        )
    model = model or named
    if model is None:
        raise ConfigError(f'config file {path} names no "model"; add one or give MODEL')
    try:
        make_config(model, **settings)
    except ConfigError as err:
        raise type(err)(f"config file {path}: {err}") from None
    return model, settings
