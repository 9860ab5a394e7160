"""The install: `pip install -r requirements.txt` keeps a CUDA user's torch (any supported
version), while the README's first command and CI pin the CPU wheel (requirements-cpu.txt).
Checked with pip's own resolver, offline, against a virtual environment whose installed torch is
another supported version."""
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import venv

import pytest
from packaging.requirements import Requirement

from config import ROOT

MIN_TORCH = "2.3"             # the oldest torch with torch.amp.GradScaler(device)
OTHER_SUPPORTED = ("2.3.1", "2.11.0", "2.15.0")   # e.g. the H100 image's torch 2.11
CPU_PIN = "2.13.0"


def _requirements(name):
    """Requirement objects of a requirements file (``-r`` includes followed)."""
    out = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            out += _requirements(line[2:].strip())
        elif line:
            out.append(Requirement(line))
    return out


def _torch_specs(name):
    return [r.specifier for r in _requirements(name) if r.name == "torch"]


def test_requirements_accept_every_supported_torch():
    (spec,) = _torch_specs("requirements.txt")
    for version in (MIN_TORCH, *OTHER_SUPPORTED, CPU_PIN):
        assert spec.contains(version), f"requirements.txt refuses torch {version}"
    assert not spec.contains("2.2.2")          # older than the APIs the code uses


def test_cpu_setup_pins_the_wheel_ci_runs():
    specs = _torch_specs("requirements-cpu.txt")
    assert all(s.contains(CPU_PIN) for s in specs)
    assert any(str(s) == f"=={CPU_PIN}" for s in specs)
    assert "requirements-cpu.txt" in (ROOT / ".ci" / "run").read_text()
    first_command = re.search(r"```bash\n(.*?)\n", (ROOT / "README.md").read_text()).group(1)
    assert "pip install -r requirements-cpu.txt" in first_command


def _fake_env(tmp_path, torch_version, requirements="requirements.txt"):
    """A virtual environment (no pip of its own) in which every requirement of ``requirements``
    looks installed (a dist-info with its METADATA): torch at ``torch_version``, the others at
    the versions this environment has."""
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    site = next(env.glob("lib/python*/site-packages"))
    for req in {r.name: r for r in _requirements(requirements)}.values():
        version = torch_version if req.name == "torch" else importlib.metadata.version(req.name)
        dist = site / f"{re.sub(r'[-_.]+', '_', req.name)}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {req.name}\n"
                                       f"Version: {version}\n")
        (dist / "INSTALLER").write_text("pip\n")
        (dist / "RECORD").write_text("")
    return env / "bin" / "python"


def _dry_run(python, requirements, tmp_path):
    """pip's resolver (offline, --dry-run) installing ``requirements`` into ``python``'s
    environment -> (exit status, the names pip would install or replace)."""
    report = tmp_path / "report.json"
    # --isolated and no config file: this machine's pip settings (local wheel folders, version
    # caps) are not what a user's pip has
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    run = subprocess.run([sys.executable, "-m", "pip", "--isolated", "--python", str(python),
                          "install", "--dry-run", "--no-index", "--quiet", "--report",
                          str(report), "-r", str(ROOT / requirements)],
                         capture_output=True, text=True, timeout=120, env=env)
    if run.returncode:
        return run.returncode, run.stderr
    return 0, [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]


@pytest.mark.parametrize("torch_version", OTHER_SUPPORTED)
def test_pip_keeps_an_installed_supported_torch(tmp_path, torch_version):
    python = _fake_env(tmp_path, torch_version)
    rc, installs = _dry_run(python, "requirements.txt", tmp_path)
    assert rc == 0 and installs == [], installs        # nothing replaced, nothing downloaded


def test_the_dry_run_does_see_a_torch_it_would_replace(tmp_path):
    # the control: the CPU pin wants torch 2.13.0, which the fake environment lacks and an
    # offline pip cannot fetch, so the same check fails there
    python = _fake_env(tmp_path, "2.11.0", "requirements-cpu.txt")
    rc, err = _dry_run(python, "requirements-cpu.txt", tmp_path)
    assert rc != 0 and "torch" in err
