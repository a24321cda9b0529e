import numpy as np
from click.testing import CliRunner

from medclf.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_synth_then_info_work_offline(tmp_path):
    out = tmp_path / "s.npz"
    result = run("data", "synth", "--like", "octmnist", "--out", out, "--scale", "0.01")
    assert result.exit_code == 0, result.output
    result = run("data", "info", out)
    assert result.exit_code == 0, result.output
    assert "octmnist (synthetic)" in result.output
    assert "normal" in result.output and "pixels mean" in result.output


def test_show_writes_a_png(tmp_path, synth_file):
    out = tmp_path / "grid.png"
    result = run("data", "show", synth_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "octmnist.npz"
    np.savez(bad, train_images=np.zeros((2, 28, 28), np.uint8))
    result = run("data", "info", bad)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "no key" in lines[0]
    assert "Traceback" not in result.output


def test_verify_reports_damaged_files(tmp_path):
    (tmp_path / "octmnist.npz").write_bytes(b"junk")
    result = run("data", "verify", "octmnist", "--root", tmp_path)
    assert result.exit_code == 1 and "bad checksum" in result.output


def test_unknown_dataset(tmp_path):
    result = run("data", "download", "mnist", "--root", tmp_path)
    assert result.exit_code == 1 and "unknown dataset 'mnist'" in result.output
