"""Plugin discovery is lazy and isolated: a broken or outdated plugin never hides the others.

A fake distribution (a ``*.dist-info`` folder, which importlib.metadata discovers on ``sys.path``)
declares four entry points next to the real ``pointcloud`` one: a module that does not exist,
a module that raises on import, a modality built for plugin API 999, and a working modality.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

import mpt
from _mpt_helpers import invoke
from mpt import registry
from mpt.errors import PluginError

GOOD_MOD, OLD_MOD, CRASH_MOD = "mpt_fake_good_xyz", "mpt_fake_oldapi_xyz", "mpt_fake_crash_xyz"

GOOD_SRC = '''
from pathlib import Path
from mpt.contract import Modality, Recipe


class Good(Modality):
    name = "fakegood"
    description = "a fake modality of the registry tests"
    default_recipe = "tiny"

    def recipes(self):
        return {"tiny": Recipe("tiny", Path(__file__), "tiny fake recipe")}


not_a_modality = object()
'''

OLD_SRC = '''
from mpt.contract import Modality


class Old(Modality):
    name = "wrongapi"
    plugin_api = 999
'''

CRASH_SRC = 'raise RuntimeError("plugin exploded while importing")\n'

ENTRY_POINTS = f"""[mpt.modalities]
broken = not_a_module_xyz:Thing
crashes = {CRASH_MOD}:Thing
wrongapi = {OLD_MOD}:Old
fakegood = {GOOD_MOD}:Good
notmodality = {GOOD_MOD}:not_a_modality
"""

FAKE = ("broken", "crashes", "wrongapi", "fakegood", "notmodality")


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / f"{GOOD_MOD}.py").write_text(GOOD_SRC)
    (tmp_path / f"{OLD_MOD}.py").write_text(OLD_SRC)
    (tmp_path / f"{CRASH_MOD}.py").write_text(CRASH_SRC)
    info = tmp_path / "fake_mpt_plugins-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-mpt-plugins\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(registry._loaded)
    registry._loaded.clear()
    for mod in (GOOD_MOD, OLD_MOD, CRASH_MOD):
        sys.modules.pop(mod, None)
    yield tmp_path
    registry._loaded.clear()
    registry._loaded.update(saved)
    for mod in (GOOD_MOD, OLD_MOD, CRASH_MOD):
        sys.modules.pop(mod, None)


def test_listing_imports_no_plugin(fake_plugins: Path) -> None:
    names = mpt.list_modalities()
    assert set(FAKE) | {"pointcloud"} <= set(names)
    assert names == sorted(names)
    for mod in (GOOD_MOD, OLD_MOD, CRASH_MOD):
        assert mod not in sys.modules, f"list_modalities() imported {mod}"


def test_missing_module_is_a_plugin_error(fake_plugins: Path) -> None:
    with pytest.raises(PluginError) as info:
        mpt.get_modality("broken")
    msg = str(info.value)
    assert "not_a_module_xyz" in msg and "ModuleNotFoundError" in msg
    assert "fake-mpt-plugins" in msg  # which distribution to fix
    assert "broken" not in registry._loaded
    with pytest.raises(PluginError):  # not cached as if it had loaded
        mpt.get_modality("broken")


def test_import_time_crash_is_a_plugin_error(fake_plugins: Path) -> None:
    with pytest.raises(PluginError) as info:
        mpt.get_modality("crashes")
    msg = str(info.value)
    assert CRASH_MOD in msg and "RuntimeError" in msg and "plugin exploded while importing" in msg


def test_wrong_plugin_api_is_a_plugin_error(fake_plugins: Path) -> None:
    with pytest.raises(PluginError) as info:
        mpt.get_modality("wrongapi")
    msg = str(info.value)
    assert "plugin API 999" in msg and f"speaks {mpt.PLUGIN_API}" in msg


def test_entry_point_that_is_not_a_modality(fake_plugins: Path) -> None:
    with pytest.raises(PluginError, match="not an mpt.Modality"):
        mpt.get_modality("notmodality")


def test_good_plugins_still_load(fake_plugins: Path) -> None:
    for name in ("broken", "wrongapi", "crashes"):
        with pytest.raises(PluginError):
            mpt.get_modality(name)
    good = mpt.get_modality("fakegood")
    assert isinstance(good, mpt.Modality) and type(good).__name__ == "Good"
    assert mpt.get_modality("fakegood") is good  # cached instance
    pc = mpt.get_modality("pointcloud")
    assert pc.name == "pointcloud" and "demo" in pc.recipes()


def test_plugin_status_reports_each_plugin(fake_plugins: Path) -> None:
    status = {s.name: s for s in mpt.plugin_status()}
    assert set(FAKE) | {"pointcloud"} <= set(status)
    assert "not_a_module_xyz" in status["broken"].error
    assert "plugin exploded" in status["crashes"].error
    assert "999" in status["wrongapi"].error
    assert "not an mpt.Modality" in status["notmodality"].error
    assert status["fakegood"].error is None and status["pointcloud"].error is None
    assert (status["fakegood"].dist, status["fakegood"].version) == ("fake-mpt-plugins", "0.0.1")
    assert status["broken"].target == "not_a_module_xyz:Thing"
    assert status["pointcloud"].dist == "mpt-pointcloud"


def test_unknown_name_lists_installed(fake_plugins: Path) -> None:
    with pytest.raises(PluginError) as info:
        mpt.get_modality("nope")
    msg = str(info.value)
    assert "unknown modality 'nope'" in msg
    for name in (*FAKE, "pointcloud"):
        assert name in msg


def test_mpt_list_marks_broken_and_keeps_the_rest(fake_plugins: Path) -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = {ln.split()[0]: ln for ln in result.stdout.splitlines() if ln and not ln.startswith(" ")}
    for name in ("broken", "crashes", "wrongapi", "notmodality"):
        assert "BROKEN:" in lines[name], lines[name]
    assert "not_a_module_xyz" in lines["broken"]
    for name in ("pointcloud", "fakegood"):
        assert " ok " in lines[name] and "BROKEN" not in lines[name]
    assert "recipe tiny (default): tiny fake recipe" in result.stdout
    assert "recipe demo (default)" in result.stdout and "recipe point-mae" in result.stdout


def test_plugin_validate_reports_each_failure(fake_plugins: Path) -> None:  # noqa: ARG001
    from mpt.testing import validate

    results = validate("fakegood")  # its only recipe is not YAML: the set-up itself fails, reported
    assert len(results) == 1 and not results[0].ok and "ConfigError" in results[0].detail
    result = invoke("plugin", "validate", "broken")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "not_a_module_xyz" in result.stdout


def test_plugin_validate_catches_a_nondeterministic_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpt.testing import validate
    from mpt_pointcloud.tokenizer import PointTokenizer

    real = PointTokenizer.tokenize

    def noisy(self, batch):  # noqa: ANN001, ANN202
        tokens = real(self, batch)
        tokens.patches = tokens.patches + torch.randn_like(tokens.patches) * 1e-3
        return tokens

    monkeypatch.setattr(PointTokenizer, "tokenize", noisy)
    sets = ("tokenizer.num_groups=8", "tokenizer.group_size=8", "tokenizer.hidden=16",
            "data.num_points=128", "data.cache_points=256")
    results = {r.name: r for r in validate("pointcloud", sets)}
    assert not results["tokenize"].ok and "deterministic" in results["tokenize"].detail
    assert results["recipes parse"].ok and results["mae loss + backward"].ok


TS_SETS = ("tokenizer.patch=20", "tokenizer.stride=20")


def test_kit_catches_an_embedding_that_mixes_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """An embed that looks across tokens lets padding leak into valid features."""
    from mpt.testing import validate
    from mpt_timeseries.tokenizer import SeriesTokenizer

    real = SeriesTokenizer.embed

    def mixing(self, tokens):  # noqa: ANN001, ANN202 - embed(tokens: TokenSet) (PLUGIN_API 2)
        x = real(self, tokens)
        return x - x.mean(dim=1, keepdim=True)

    monkeypatch.setattr(SeriesTokenizer, "embed", mixing)
    results = {r.name: r for r in validate("timeseries", TS_SETS)}
    assert not results["padding never changes valid tokens"].ok
    assert "per token" in results["padding never changes valid tokens"].detail
    assert results["tokenize"].ok and results["bad files name the file"].ok


def test_kit_catches_a_reader_that_accepts_garbage_or_hides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import mpt_timeseries.dataset as ds_mod
    from mpt.errors import DataError
    from mpt.testing import validate
    from mpt_timeseries.io import SeriesFile

    real = ds_mod.read_series
    monkeypatch.setattr(ds_mod, "read_series",
                        lambda path, *a: SeriesFile([np.ones((2, 300), np.float32)] * 3, ["x", "y"], None))
    results = {r.name: r for r in validate("timeseries", TS_SETS)}
    assert not results["bad files name the file"].ok and "was accepted" in results["bad files name the file"].detail

    def anonymous(path, *a):  # noqa: ANN001, ANN202
        if path.name.startswith(("corrupt", "empty")):
            raise DataError("input", "something is wrong")
        return real(path, *a)

    monkeypatch.setattr(ds_mod, "read_series", anonymous)
    results = {r.name: r for r in validate("timeseries", TS_SETS)}
    assert not results["bad files name the file"].ok and "does not name it" in results["bad files name the file"].detail


def test_kit_catches_a_nondeterministic_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    import mpt.trainer
    from mpt.testing import validate

    real = mpt.trainer.build_model

    def unseeded(cfg, modality):  # noqa: ANN001, ANN202 - build_model(cfg, modality): no batch (Contract 2)
        model, masker = real(cfg, modality)
        return model, lambda tokens, g: masker(tokens, torch.Generator().manual_seed(time.perf_counter_ns() % 9973))

    monkeypatch.setattr(mpt.trainer, "build_model", unseeded)
    results = {r.name: r for r in validate("timeseries", TS_SETS)}
    check = results["deterministic under a seed"]
    assert not check.ok
    # it failed on the masks, not because the patched builder could not be called
    assert check.detail.startswith("AssertionError"), check.detail
    assert results["mae loss + backward"].ok and results["jepa loss + backward"].ok, results

