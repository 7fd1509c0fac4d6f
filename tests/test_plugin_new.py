"""``mpt plugin new``: the scaffold installs, passes its own tests and ``mpt plugin validate`` right
after creation, and pretrains; bad names and existing folders are refused without writing anything.
Also the format of ``mpt plugin validate``'s report.

The generated package is installed the way a user would (pip, from its folder) but into a temporary
``--target`` folder that only subprocesses see (on their PYTHONPATH): the shared venv is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _mpt_helpers import invoke

GENERATED = ("pyproject.toml", "README.md", ".gitignore", "tests/test_conformance.py", "tests/test_io.py",
             "tests/test_dataset.py", "tests/test_tokenizer.py",
             *(f"src/mpt_wave/{m}.py" for m in ("__init__", "modality", "config", "io", "tokenizer", "dataset")),
             "src/mpt_wave/recipes/demo.yaml", "src/mpt_wave/data/ATTRIBUTION.md")
TS_SETS = ("tokenizer.patch=20", "tokenizer.stride=20")


def check_names() -> list[str]:
    """The names ``mpt plugin validate`` reports, in order (the kit's set-up, then ``Kit.checks``)."""
    from mpt.testing import Kit

    return ["load + demo batch", *Kit.__new__(Kit).checks(Path()).keys()]  # names only: no check runs


def assert_all_ok(stdout: str) -> None:
    names = check_names()
    for name in names:
        assert re.search(rf"^\s*ok\s+{re.escape(name)}$", stdout, re.MULTILINE), f"no 'ok {name}' line:\n{stdout}"
    assert "FAIL" not in stdout and f"all {len(names)} checks passed" in stdout, stdout


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def new_wave(parent: Path) -> Path:
    result = invoke("plugin", "new", "wave", "--dir", str(parent))
    assert result.exit_code == 0, result.output
    pkg = parent / "mpt-wave"
    for f in GENERATED:
        assert (pkg / f).is_file(), f
    assert len(list((pkg / "src" / "mpt_wave" / "data").glob("*.npy"))) >= 2
    assert "src/mpt_wave/tokenizer.py" in result.stdout  # the files written are listed …
    for step in (f"pip install -e {pkg}", f"pytest {pkg / 'tests'}", "mpt plugin validate wave",
                 "mpt pretrain --modality wave"):  # … and the next commands
        assert step in result.stdout, result.stdout
    assert not list(parent.glob(".mpt-wave-*")), "the temporary build folder was left behind"
    return pkg


def test_new_plugin_passes_its_tests_and_validate_and_pretrains(tmp_path: Path) -> None:
    pkg = new_wave(tmp_path)
    site = tmp_path / "site"
    pip = run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
               "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), str(pkg)], tmp_path)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "mpt_wave" / "recipes" / "demo.yaml").is_file() and list((site / "mpt_wave" / "data").glob("*.npy"))
    assert importlib.util.find_spec("mpt_wave") is None, "the shared environment must stay untouched"
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}

    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:dash", str(pkg / "tests")],
                pkg, env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary) and not re.search("failed|error|skipped", summary), tests.stdout

    validate = run([sys.executable, "-m", "mpt_cli", "plugin", "validate", "wave"], tmp_path, env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert_all_ok(validate.stdout)

    pretrain = run([sys.executable, "-m", "mpt_cli", "pretrain", "--modality", "wave", "--max-steps", "5",
                    "--out", "tmp/run"], tmp_path, env)
    assert pretrain.returncode == 0, pretrain.stdout + pretrain.stderr
    assert "done: 5 steps" in pretrain.stdout
    assert (tmp_path / "tmp" / "run" / "encoder" / "config.json").is_file()
    assert list((tmp_path / "tmp" / "run" / "figures").glob("*.png"))


def test_new_writes_to_the_current_folder_and_the_code_is_ruff_clean(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("plugin", "new", "eeg_signal")
    assert result.exit_code == 0, result.output
    pkg = tmp_path / "mpt-eeg_signal"
    assert 'eeg_signal = "mpt_eeg_signal:EegSignal"' in (pkg / "pyproject.toml").read_text()
    assert "class EegSignal(Modality):" in (pkg / "src" / "mpt_eeg_signal" / "modality.py").read_text()
    for f in pkg.rglob("*"):
        if f.suffix in (".py", ".toml", ".md", ".yaml"):
            assert not re.search(r"\$\{?[a-z]", f.read_text()), f"unfilled placeholder in {f}"
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.is_file():
        pytest.skip("ruff is not installed next to the interpreter")
    lint = run([str(ruff), "check", "--no-cache", "."], pkg)  # the generated pyproject's [tool.ruff] settings
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_template_files_are_not_python_to_pytest_or_ruff() -> None:
    from mpt_cli.scaffold import TEMPLATE

    files = [p for p in TEMPLATE.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".tmpl" for p in files), files


@pytest.mark.parametrize(("name", "existing", "message"), [
    ("Wave-1", False, "invalid plugin name 'Wave-1'"),
    ("1wave", False, "lowercase Python identifier"),
    ("wave", True, "already exists"),
    ("timeseries", False, "a modality named 'timeseries' is already installed"),
])
def test_new_refuses_without_writing(tmp_path: Path, name: str, existing: bool, message: str) -> None:
    if existing:
        (tmp_path / "mpt-wave").mkdir()
        (tmp_path / "mpt-wave" / "mine.txt").write_text("keep me")
    before = sorted(tmp_path.rglob("*"))
    result = invoke("plugin", "new", name, "--dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before, "nothing may be written"
    if name == "timeseries":
        assert "pointcloud" in result.stderr  # the installed modalities are listed
    if existing:
        assert (tmp_path / "mpt-wave" / "mine.txt").read_text() == "keep me"


def test_validate_report_lists_every_check() -> None:
    result = invoke("plugin", "validate", "timeseries", *(a for s in TS_SETS for a in ("--set", s)))
    assert result.exit_code == 0, result.output
    assert_all_ok(result.stdout)
    assert result.stdout.startswith("validating modality 'timeseries' (mpt-timeseries ")


def test_validate_report_indents_the_failure_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    import mpt.testing
    from mpt.testing import CheckResult

    fake = [CheckResult("load + demo batch", True),
            CheckResult("tokenize", False, "AssertionError: tokenize must be deterministic\nsecond line"),
            CheckResult("figure", True)]
    monkeypatch.setattr(mpt.testing, "validate", lambda name, sets=(): fake)
    result = invoke("plugin", "validate", "timeseries")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()[1:]
    assert lines == ["  ok    load + demo batch",
                     "  FAIL  tokenize",
                     "          AssertionError: tokenize must be deterministic",
                     "          second line",
                     "  ok    figure",
                     "1 of 3 checks failed: tokenize"], result.stdout
