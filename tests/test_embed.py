"""`mpt embed` and mpt.features: one embedding per sample, in dataset order, as .npy (+ sources) or
.parquet; mean vs CLS pooling; data overrides. Tiny time-series encoders built directly (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mpt
from _mpt_helpers import invoke
from mpt.backbone import build_backbone
from mpt.config import build_config
from mpt.embeddings import sources_path
from mpt.features import extract_features, open_dataset, pool_output
from mpt.pretrained import encoder_card, read_card, save_encoder
from test_cli_pretrain import assert_clean_error

# context 40 = 5 patches of 8 steps; series shorter than 8 steps are skipped
TINY_TS_ENCODER = ["model.dim=16", "model.depth=1", "model.heads=2", "data.context=40", "data.min_length=8",
                   "tokenizer.patch=8", "tokenizer.stride=8"]


def make_encoder(path: Path, *sets: str, seed: int = 0) -> Path:
    """A random-init tiny time-series encoder saved as an encoder/ folder (card included)."""
    modality = mpt.get_modality("timeseries")
    cfg = build_config(modality, "demo", sets=[*TINY_TS_ENCODER, *sets])
    torch.manual_seed(seed)
    backbone = build_backbone(modality, cfg.tokenizer, cfg.model)
    return save_encoder(backbone, encoder_card(cfg, backbone, {"samples": 0}), path)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {"mean": make_encoder(root / "plain"), "cls": make_encoder(root / "cls", "model.cls_token=true")}


def write_series_folder(folder: Path, n: int = 11, channels: int = 2, length: int = 40, seed: int = 0) -> list[Path]:
    """``n`` .npy series ``[channels, length]`` of distinct content, written out of name order, some in a
    subfolder; returns the files in the order the dataset reads them (sorted paths)."""
    rng = np.random.default_rng(seed)
    files = [folder / (f"sub/s{i:02d}.npy" if i % 4 == 0 else f"s{i:02d}.npy") for i in range(n)]
    for i in rng.permutation(n):
        files[i].parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(length)
        x = np.stack([np.sin(t / (2 + i + c)) * (1 + i) + rng.normal(scale=0.1, size=length) for c in range(channels)])
        np.save(files[i], x.astype(np.float32))
    return sorted(files)


def direct(encoder_dir: Path, arrays: list[np.ndarray], pool: str = "mean") -> np.ndarray:
    """The features of each array computed alone, straight from the encoder."""
    enc = mpt.load_encoder(encoder_dir)
    with torch.no_grad():
        return np.concatenate([pool_output(enc, torch.from_numpy(a)[None], pool).numpy() for a in arrays])


def test_embed_npy_rows_and_sources_follow_the_files(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    files = write_series_folder(data)
    out = tmp_path / "emb" / "x.npy"
    result = invoke("embed", encoders["mean"], "--data", data, "--out", out, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "11 × 16" in result.stdout and str(out) in result.stdout
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (11, 16)
    assert sources_path(out).read_text().splitlines() == [str(f) for f in files]
    # row i is file i's own embedding: order kept across batches of 4, nothing mixed between samples
    np.testing.assert_allclose(x, direct(encoders["mean"], [np.load(f) for f in files]), atol=1e-5, rtol=1e-4)
    assert np.abs(x[1:] - x[:-1]).max() > 1e-3  # distinct inputs, distinct rows


def test_embed_parquet_matches_npy(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    pq = pytest.importorskip("pyarrow.parquet")
    data = tmp_path / "data"
    files = write_series_folder(data, n=6)
    assert invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "x.npy").exit_code == 0
    result = invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "x.parquet")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.column_names == ["source", "embedding"]  # no labels in this data
    assert table.column("source").to_pylist() == [str(f) for f in files]
    emb = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(emb, np.load(tmp_path / "x.npy"))
    meta = table.schema.metadata
    assert meta[b"pool"] == b"mean" and meta[b"modality"] == b"timeseries"


def test_windows_of_one_series_share_its_source_and_labels_go_to_parquet(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(1)
    path = tmp_path / "Toy_TRAIN.ts"
    rows = [",".join(f"{v:.3f}" for v in rng.normal(size=length)) + f":{label}"
            for length, label in ((100, "up"), (40, "down"), (85, "up"))]
    path.write_text("@problemName toy\n@univariate true\n@classLabel true up down\n@data\n" + "\n".join(rows) + "\n")
    out = tmp_path / "x.parquet"
    result = invoke("embed", encoders["mean"], "--data", path, "--out", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    # windows of 40 steps: 100 → 0, 40, 60; 40 → 0; 85 → 0, 40, 45
    assert table["source"] == [f"{path}#0"] * 3 + [f"{path}#1"] + [f"{path}#2"] * 3
    assert table["label"] == ["up"] * 3 + ["down"] + ["up"] * 3
    # --set data.* reaches the dataset: 20-step windows → 5 + 2 + 5
    result = invoke("embed", encoders["mean"], "--data", path, "--out", out, "--set", "data.context=20")
    assert result.exit_code == 0, result.output
    assert len(pq.read_table(out)) == 5 + 2 + 5


def test_mean_and_cls_pools(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    files = write_series_folder(data, n=5)
    arrays = [np.load(f) for f in files]
    for pool in ("mean", "cls"):
        out = tmp_path / f"{pool}.npy"
        result = invoke("embed", encoders["cls"], "--data", data, "--out", out, "--pool", pool)
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(np.load(out), direct(encoders["cls"], arrays, pool), atol=1e-5, rtol=1e-4)
    enc = mpt.load_encoder(encoders["cls"])
    with torch.no_grad():
        o = enc(torch.from_numpy(np.stack(arrays)))
    # mean: the token average (CLS excluded), cls: the CLS token's output — different vectors
    np.testing.assert_allclose(np.load(tmp_path / "mean.npy"), o.tokens.mean(1).numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "cls.npy"), o.pooled.numpy(), atol=1e-5, rtol=1e-4)
    assert np.abs(np.load(tmp_path / "mean.npy") - np.load(tmp_path / "cls.npy")).max() > 1e-3
    # an encoder without a CLS token: --pool cls is a clean error, before any file is written
    bad = tmp_path / "no.npy"
    assert_clean_error(invoke("embed", encoders["mean"], "--data", data, "--out", bad, "--pool", "cls"),
                       "no CLS token", "--pool mean")
    assert not bad.exists()


def test_groups_pool_concatenates_one_vector_per_channel(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    """``--pool groups`` (was ``channels``): PatchTST folds the 2 channels into the batch, so each row is the
    per-channel means of the tokens, concatenated in channel order."""
    data = tmp_path / "data"
    files = write_series_folder(data, n=5)
    arrays = [np.load(f) for f in files]
    out = tmp_path / "groups.npy"
    result = invoke("embed", encoders["mean"], "--data", data, "--out", out, "--pool", "groups")
    assert result.exit_code == 0, result.output
    assert "5 × 32" in result.stdout and "pool groups" in result.stdout
    x = np.load(out)
    np.testing.assert_allclose(x, direct(encoders["mean"], arrays, "groups"), atol=1e-5, rtol=1e-4)
    enc = mpt.load_encoder(encoders["mean"])
    with torch.no_grad():
        o = enc(mpt.Batch(input=torch.from_numpy(np.stack(arrays))))  # a Batch or a plain tensor
    assert o.rows_per_sample == 2
    per_channel = o.tokens.reshape(5, 2, -1, 16).mean(2)  # [B, channels, D]
    np.testing.assert_allclose(x, per_channel.flatten(1).numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(x.reshape(5, 2, 16).mean(1), o.pooled.numpy(),
                               atol=1e-5, rtol=1e-4)  # the mean pool is the mean of the channel blocks
    old = invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "c.npy", "--pool", "channels")
    assert old.exit_code == 2 and "channels" in old.stderr and "groups" in old.stderr, old.output
    assert not (tmp_path / "c.npy").exists()


def test_flat_pool_is_every_token_in_order_with_padding_zeroed(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    """``--pool flat`` (PatchTST's flatten head): [B, rows·N·D], CLS left out; a series padded into a longer
    window gives its own tokens then zeros, and features of fewer tokens are zero-padded to the widest."""
    card = read_card(encoders["cls"])
    enc = mpt.load_encoder(encoders["cls"])
    rng = np.random.default_rng(4)
    np.save(tmp_path / "a.npy", rng.normal(size=(2, 40)).astype(np.float32))
    with torch.no_grad():
        o = enc(torch.from_numpy(np.load(tmp_path / "a.npy"))[None])
    ds, modality = open_dataset(card, tmp_path / "a.npy", "probe", ["data.context=40"])
    x = extract_features(enc, ds, collate=modality.collate, pool="flat", progress=False).x
    n = o.tokens.shape[1]  # 2 channels × 5 patches, the CLS token not among them
    assert x.shape == (1, n * 16) and n == 10
    np.testing.assert_allclose(x[0], o.tokens[0].flatten().numpy(), atol=1e-5, rtol=1e-4)
    # a 24-step series in a 40-step window: 3 real patches per channel, then 2 padding patches of zeros
    np.save(tmp_path / "short.npy", rng.normal(size=(2, 24)).astype(np.float32))
    padded, _ = open_dataset(card, tmp_path / "short.npy", "probe", ["data.context=40"])
    y = extract_features(enc, padded, collate=modality.collate, pool="flat", progress=False).x.reshape(2, 5, 16)
    assert np.abs(y[:, :3]).min() > 0 and not y[:, 3:].any()
    # read as a 24-step window it has 6 tokens, not 10: zero-padded at the end to the widest batch's width
    exact, _ = open_dataset(card, tmp_path / "short.npy", "probe", ["data.context=24"])
    both = extract_features(enc, [ds[0], exact[0]], batch_size=1, collate=modality.collate, pool="flat",
                            progress=False).x
    assert both.shape == (2, 160) and not both[1, 96:].any()
    # the padding is masked in attention: the same tokens as in the 40-step window
    np.testing.assert_allclose(both[1, :96], y[:, :3].reshape(-1), atol=1e-5, rtol=1e-4)


def test_mean_pool_with_cls_ignores_padding(encoders, tmp_path: Path) -> None:  # noqa: ANN001
    # a 24-step series in a 40-step window is padded with 2 missing patches: its mean-pooled features equal
    # those of the same series read with a 24-step window (no padding)
    card = read_card(encoders["cls"])
    enc = mpt.load_encoder(encoders["cls"])
    np.save(tmp_path / "short.npy", np.random.default_rng(3).normal(size=(2, 24)).astype(np.float32))
    feats = []
    for context in (40, 24):
        ds, modality = open_dataset(card, tmp_path / "short.npy", "probe", [f"data.context={context}"])
        feats.append(extract_features(enc, ds, collate=modality.collate, progress=False).x)
    assert feats[0].shape == feats[1].shape == (1, 16)
    np.testing.assert_allclose(feats[0], feats[1], atol=1e-5, rtol=1e-4)


def test_extract_features_keeps_order_labels_and_mode(encoders) -> None:  # noqa: ANN001
    card = read_card(encoders["mean"])
    ds, modality = open_dataset(card, None, "test", [])  # the plugin's demo data (BasicMotions, labelled)
    enc = mpt.load_encoder(encoders["mean"]).train()
    feats = extract_features(enc, ds, batch_size=7, collate=modality.collate, progress=False)
    assert enc.training  # the caller's mode is restored
    assert feats.x.shape == (len(ds), 16) and feats.x.dtype == np.float32
    assert feats.labels is not None and feats.labels.tolist() == [ds[i].label for i in range(len(ds))]
    assert feats.sources == [ds[i].source for i in range(len(ds))]
    assert feats.classes == ds.classes and len(feats.classes) == 4


def test_embed_errors(encoders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    write_series_folder(data, n=3)
    assert_clean_error(invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "x.csv"),
                       ".npy or .parquet")
    assert_clean_error(invoke("embed", tmp_path, "--data", data, "--out", tmp_path / "x.npy"),
                       "config.json is missing")
    assert_clean_error(invoke("embed", encoders["mean"], "--data", tmp_path / "nope", "--out", tmp_path / "x.npy"),
                       "nope", "no such file or folder")
    assert_clean_error(invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "x.npy",
                              "--set", "data.contex=3"), "data.contex", "unknown key", "context")
    assert_clean_error(invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "x.npy",
                              "--set", "model.dim=3"), "model.dim", "only data.* keys")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert_clean_error(invoke("embed", encoders["mean"], "--data", data, "--out", tmp_path / "x.parquet"),
                       "pip install pyarrow or write .npy")
