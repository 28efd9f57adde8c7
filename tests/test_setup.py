"""Set-up: environment.yml lists exactly pyproject's dependencies; the CLI runs."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR

ROOT = Path(__file__).resolve().parents[1]


def _normalized(requirement: str) -> str:
    return requirement.replace(" ", "").lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"]
                       if isinstance(item, dict) and "pip" in item)
    assert sorted(map(_normalized, pip_section)) == sorted(map(_normalized,
                                                               project["dependencies"]))
    python = next(item for item in environment["dependencies"]
                  if isinstance(item, str) and item.startswith("python"))
    assert project["requires-python"] == ">=" + python.split("=")[1]


def test_ctpnp_info_reports_versions_and_cuda():
    completed = subprocess.run([sys.executable, "-m", "ctpnp.cli", "info"], capture_output=True,
                               text=True, check=True)
    lines = dict(line.split(None, 1) for line in completed.stdout.splitlines()
                 if not line.startswith(("torch CUDA", "ASTRA CUDA")))
    assert lines["odl"].strip() == "1.0.0"
    assert "ASTRA CUDA" in completed.stdout
    shipped = [line for line in completed.stdout.splitlines() if "validation PSNR" in line]
    assert {line.split()[0] for line in shipped} == {"gmm", "lpn", "prox"}
    assert lines["default"].split() == [DEFAULT_METHOD, "with", "prior", DEFAULT_PRIOR]


def test_an_error_inside_a_command_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """The error reaches ``main``'s handler (argparse accepts the arguments): one line,
    exit status 1; ``--debug`` re-raises it with its traceback."""
    arguments = ["compare", str(tmp_path / "missing"), "--reference", str(tmp_path / "absent"),
                 "--out", str(tmp_path / "out")]
    completed = subprocess.run([sys.executable, "-m", "ctpnp.cli", *arguments],
                               capture_output=True, text=True)
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("ctpnp: error:") and "absent" in lines[0]
    debug = subprocess.run([sys.executable, "-m", "ctpnp.cli", "--debug", *arguments],
                           capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_command_is_a_usage_error():
    completed = subprocess.run([sys.executable, "-m", "ctpnp.cli", "nonsense"],
                               capture_output=True, text=True)
    assert completed.returncode == 2  # argparse's usage error, before any command runs
    assert completed.stderr.startswith("usage: ctpnp") and "invalid choice" in completed.stderr


def test_train_with_a_folder_without_ct_gives_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    completed = subprocess.run(
        [sys.executable, "-m", "ctpnp.cli", "train", "lpn", "--data", str(tmp_path),
         "--out", str(tmp_path / "lpn.safetensors")], capture_output=True, text=True)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctpnp: error:") and str(tmp_path) in lines[0]
    assert not (tmp_path / "lpn.safetensors").exists()


def test_keep_best_for_the_lpn_is_refused_before_any_training(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "ctpnp.cli", "train", "lpn", "--keep-best",
         "--out", str(tmp_path / "lpn.safetensors")], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "--keep-best" in lines[0] and "prox" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("options", "named"), [
    (["--keep-best"], "--keep-best"), (["--restart"], "--restart"),
    (["--data", "."], "--data")])
def test_options_a_gmm_fit_has_no_use_for_are_refused_before_any_fit(tmp_path, options, named):
    completed = subprocess.run(
        [sys.executable, "-m", "ctpnp.cli", "train", "gmm", *options,
         "--out", str(tmp_path / "gmm.safetensors")], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0]
    assert list(tmp_path.iterdir()) == []
