"""Packaging and command-line conventions: --version, exit codes, the install commands."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from medclf import __version__
from medclf.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output == f"medclf, version {__version__}\n"
    out = subprocess.run(
        [sys.executable, "-m", "medclf.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert __version__ in out.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["data", "info", "x.npz", "--size", "7"], "'7' is not one of"),
        (["train", "torch-ffn", "--activation", "sigmoid"], "'sigmoid' is not one of"),
        (["train", "torch-ffn", "--no-such-flag"], "No such option"),
        (["no-such-command"], "No such command"),
        (["export", "somewhere", "--format", "pdf"], "unknown format 'pdf'"),
    ],
)
def test_usage_errors_exit_2_in_one_line(args, words):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], lines
    assert "--help')" in lines[0]


def test_other_errors_still_exit_1(tmp_path):
    result = CliRunner().invoke(cli, ["data", "info", str(tmp_path / "missing.npz")])
    assert result.exit_code == 1 and result.output.startswith("Error: ")


def test_readme_and_ci_install_the_same_way():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "torch>=" in runtime and "pytest" not in runtime  # a range; the pin is a constraint
    assert re.search(r"^torch==\S+$", (ROOT / "constraints.txt").read_text(), re.M)
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci/run").read_text()
    main = re.search(r"pip install -c constraints.txt -e \. && medclf reproduce", readme)
    assert main, "the README's main command installs the runtime dependencies only"
    tests = re.search(
        r'pip install -c constraints.txt -e "\.\[([a-z,]+)\]" && python -m pytest', readme
    )
    assert tests and f'-c constraints.txt -e ".[{tests[1]}]"' in ci
    extras = set(tests[1].split(","))
    assert {"dev", "notebook", "explain"} <= extras <= set(project["optional-dependencies"])
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^captum==\S+$", pins, re.M)  # explain's Captum, as tested


def _readme_number(pattern: str) -> int:
    found = re.findall(pattern, (ROOT / "README.md").read_text())
    assert len(found) == 1, f"the README states {pattern!r} {len(found)} times"
    return int(found[0].replace(",", ""))


def test_readme_counts_match_the_code():
    from medclf.data import fetch, load, registry
    from medclf.models.classic import MAX_TRAIN
    from medclf.models.registry import MODELS
    from medclf.report.figures import FIGURES
    from medclf.report.medmnist_v2 import MEDMNIST_V2, METHODS
    from medclf.theory import interval

    assert _readme_number(r"the (\d+) MedMNIST datasets medclf knows") == len(registry.REGISTRY)
    dims = [info.dims for info in registry.REGISTRY.values()]
    assert _readme_number(r"knows, (\d+) 2D and") == dims.count(2)
    assert _readme_number(r"2D and (\d+) 3D") == dims.count(3)
    sizes = re.search(r"each at sizes ([\d, ]+)\)", (ROOT / "README.md").read_text())[1]
    assert [int(s) for s in sizes.split(", ")] == sorted({s for _, s in registry.SIZED})
    assert _readme_number(r"all (\d+) datasets × \d+ methods") == len(MEDMNIST_V2)
    assert _readme_number(r"all \d+ datasets × (\d+) methods") == len(METHODS)
    # report.draw_figures: the curve figures of FIGURES, Figure 18 (theory) and the Q1.2a one
    assert _readme_number(r"(\d+) figures \(PNG and PDF\)") == len(FIGURES) + 2
    assert _readme_number(r"all 2\^D inputs up to D = (\d+)") == interval.EXHAUSTIVE_MAX_D
    assert _readme_number(r"1 ≤ D ≤ (\d+)") == interval.MAX_D
    assert _readme_number(r"≤ ([\d,]+) training images") == MAX_TRAIN["sklearn-svm"]
    assert (
        _readme_number(r"on (\d+) PCA components")
        == MODELS["sklearn-knn"].defaults["pca_components"]
    )
    assert _readme_number(r"at most ([\d,]+) classes") == load.MAX_CLASSES
    assert _readme_number(r"untouched for (\d+) minutes") * 60 == fetch.STALE_SECONDS


def test_docs_name_no_path_of_one_machine():
    """Data and outputs are named relative to the repository (../shared/data/...), never by
    where one machine keeps them."""
    docs = [ROOT / "README.md"] + [
        path
        for folder in ("docs", "examples", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".md", ".py", ".ipynb", ".txt") and "runs" not in path.parts
    ]
    absolute = re.compile(r"(?<![\w.~])/(?:work|home|root|Users|mnt|scratch)/")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in docs
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if absolute.search(line)
    ]
    assert found == []


def _readme_outputs() -> set[str]:
    """What the README's examples and the commands' defaults write, relative to the repository
    root (a folder as a file inside it); placeholders (DIR, FILE) and absolute paths left out."""
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r'(?:--out|--plot|--output-dir) ([\w./-]+)|\bout="([^"]+)"', readme)
    named = [a or b for a, b in named]
    for db in re.findall(r"sqlite:///([\w./-]+\.db)", readme):
        named += [db, db.removesuffix(".db") + "-artifacts"]  # tracking.py puts artifacts there
    named += [p.default for cmd in _commands(cli) for p in cmd.params if p.name == "out"]
    named.append("runs")  # medclf train's and medclf runs' default folder
    paths = set()
    for name in named:
        if not isinstance(name, str) or name.startswith("/") or re.search(r"\b[A-Z]{2,}\b", name):
            continue
        paths.add(name if Path(name).suffix else f"{name}/metrics.json")
    return paths


def _commands(group):
    for command in group.commands.values():
        yield from _commands(command) if hasattr(command, "commands") else [command]


def test_readme_examples_write_only_where_git_ignores(tmp_path):
    outputs = _readme_outputs()
    assert "reproduction/metrics.json" in outputs and len(outputs) > 10  # the parsing works
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *sorted(outputs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode == 128:
        pytest.skip(f"not a git checkout: {done.stderr.strip()}")
    assert set(outputs) - set(done.stdout.splitlines()) == set()
