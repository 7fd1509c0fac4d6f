"""Contract 2 end to end on a synthetic third-party plugin (tests/synth/mpt_synth.py): three token
groups with different patch sizes and their own projections, metadata through the DataLoader,
variable lengths whose padding never counts, decoder masks, several JEPA masks, a masker and an
objective registered by entry point and used from the CLI, an iterable dataset, lazy files."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import mpt
from _mpt_helpers import invoke, read_metrics
from mpt import registry
from mpt.config import build_config
from mpt.contract import Batch, Mask, as_masks, collate_samples
from mpt.errors import PluginError
from mpt.trainer import build_model, pretrain

SYNTH = Path(__file__).with_name("synth")
ENTRY_POINTS = """[mpt.modalities]
synth = mpt_synth:Synth

[mpt.maskers]
stripes = mpt_synth:MASKER

[mpt.objectives]
meanpatch = mpt_synth:objective
"""


@pytest.fixture
def synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - the mpt_synth module
    info = tmp_path / "mpt_synth_plugin-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mpt-synth-plugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(SYNTH))
    for reg in registry.REGISTRIES.values():
        importlib.import_module(reg.core_module)  # the core's own entries, before the copy below
        monkeypatch.setattr(reg, "_plugins_loaded", False)
        monkeypatch.setattr(reg, "_items", dict(reg._items))
    monkeypatch.setattr(registry, "_loaded", {k: v for k, v in registry._loaded.items() if k != "synth"})
    import mpt_synth

    mpt_synth.SEEN_META.clear()
    return mpt_synth


def synth_config(*sets: str, objective: str = "mae"):  # noqa: ANN201
    return build_config(mpt.get_modality("synth"), None, None, sets, {"objective": objective})


def test_three_groups_of_different_patch_sizes_each_with_its_projection(synth) -> None:  # noqa: ANN001
    cfg = synth_config()
    model, _ = build_model(cfg, mpt.get_modality("synth"))
    tok = model.backbone.tokenizer
    batch = collate_samples([synth.make_sample(i, cfg.data) for i in range(2)])
    tokens = model.backbone.tokens(batch)
    assert tokens.patch_shape == (8,) and set(tokens.groups.unique().tolist()) == {0, 1, 2}
    # band 2 has patches of 2 steps: the rest of its row is NaN padding, never embedded as a value
    band2 = tokens.patches[tokens.groups == 2]
    assert band2[:, 2:].isnan().all() and not band2[:, :2].isnan().any()
    emb = tok.embed(tokens)
    # a group's embedding uses only its own projection: changing band 1's weights changes only band-1 tokens
    with torch.no_grad():
        tok.proj[1].weight.add_(1.0)
    changed = (tok.embed(tokens) - emb).abs().sum(-1) > 0
    assert torch.equal(changed, tokens.groups == 1)


@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_grouped_tokenizer_trains_and_the_loss_falls(synth, tmp_path: Path, objective: str) -> None:  # noqa: ANN001
    cfg = synth_config("train.max_steps=60", objective=objective)
    result = pretrain(cfg, mpt.get_modality("synth"), tmp_path / "run", progress=False)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert result.steps == 60
    late = sum(losses[-3:]) / 3
    assert late < 0.8 * sum(losses[:2]) / 2, losses
    if objective == "mae":  # per-patch standardised targets: predicting zeros scores ≈ 1
        assert late < 0.85, losses
    enc = mpt.load_encoder(tmp_path / "run" / "encoder")
    out = enc(collate_samples([synth.make_sample(i, cfg.data) for i in range(3)]))
    assert out.groups is not None and out.tokens.shape[:2] == out.groups.shape


def test_metadata_reaches_the_tokenizer_through_two_dataloader_workers(synth, tmp_path: Path) -> None:  # noqa: ANN001
    modality = mpt.get_modality("synth")
    cfg = synth_config("tokenizer.record_meta=true", "train.num_workers=2", "train.max_steps=3",
                       "data.samples=24")
    pretrain(cfg, modality, tmp_path / "run", progress=False)
    gains = [g for step in synth.SEEN_META for g in step]
    assert gains and set(gains) <= {1.0, 2.0, 3.0, 4.0} and len(set(gains)) > 1
    # the gain undoes the division in the data: tokens hold the original series
    batch = collate_samples([synth.make_sample(i, cfg.data) for i in (1, 3)])
    tokens = build_model(cfg, modality)[0].backbone.tokens(batch)
    want = synth.make_series(1, cfg.data.length)[:4, 0]
    torch.testing.assert_close(tokens.patches[0, 0, :4], want)


def test_padding_is_never_kept_predicted_attended_or_scored(synth) -> None:  # noqa: ANN001
    cfg = synth_config("mae.mask.ratio=0.6")
    torch.manual_seed(0)
    model, masker = build_model(cfg, mpt.get_modality("synth"))
    model.eval()
    samples = [synth.make_sample(i, cfg.data) for i in (0, 1, 2)]  # sample 2 is short: padded
    batch = collate_samples(samples)
    assert batch.meta["length"].tolist() == [64, 64, 24]
    tokens = model.backbone.tokens(batch)
    valid = tokens.valid
    assert valid is not None and not valid[2].all() and valid[:2].all()
    (mask,) = as_masks(masker(tokens, torch.Generator().manual_seed(0)))
    n_valid = int(valid[2].sum())
    kept_pad = (~torch.gather(valid, 1, mask.keep)).sum(1)
    pred_pad = (~torch.gather(valid, 1, mask.pred)).sum(1)
    assert kept_pad[:2].sum() == 0 and pred_pad[:2].sum() == 0
    # the short sample spends slots on padding only where its valid tokens run out
    assert int(kept_pad[2]) + int(pred_pad[2]) == mask.keep.shape[1] + mask.pred.shape[1] - n_valid
    out = model(tokens, [mask])
    # new contents (and positions) of the padding tokens change neither the loss nor any valid prediction
    pad = ~valid
    junk = tokens.patches.clone()
    junk[pad] = torch.randn_like(junk[pad]) * 100
    coords = tokens.coords.clone()
    coords[pad] = coords[pad] + 50
    other = model(type(tokens)(**{**tokens.__dict__, "patches": junk, "coords": coords}), [mask])
    assert other.loss.item() == pytest.approx(out.loss.item(), rel=1e-5)
    pred_valid = torch.gather(valid, 1, mask.pred)
    torch.testing.assert_close(other.pred[pred_valid], out.pred[pred_valid], atol=1e-5, rtol=1e-5)


def test_decoder_masking_reconstructs_and_scores_only_pred_and_decode(synth) -> None:  # noqa: ANN001
    from mpt.targets import PatchTarget

    cfg = synth_config("data.short=64")
    torch.manual_seed(0)
    model, _ = build_model(cfg, mpt.get_modality("synth"))
    model.eval()
    tokens = model.backbone.tokens(collate_samples([synth.make_sample(i, cfg.data) for i in range(2)]))
    n = tokens.num_tokens
    keep = torch.arange(0, n, 4).expand(2, -1)
    pred = torch.tensor([i for i in range(n) if i % 4]).expand(2, -1)
    decode = torch.arange(0, n, 2).expand(2, -1)  # overlaps keep: VideoMAE V2 keeps visible tokens too
    mask = Mask(keep=keep, pred=pred, decode=decode)
    targets = mask.targets()
    assert targets.shape[1] == len([i for i in range(n) if i % 4 and i % 2 == 0])
    assert set(targets[0].tolist()) == set(pred[0].tolist()) & set(decode[0].tolist())
    out = model(tokens, [mask])
    assert out.pred.shape[:2] == targets.shape
    want = PatchTarget(normalize=True).loss(out.pred, torch.gather(
        tokens.patches, 1, targets[..., None].expand(-1, -1, 8)))
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-6)
    uneven = Mask(keep=keep, pred=pred, decode=torch.stack([decode[0], torch.arange(1, n, 2)]))
    with pytest.raises(ValueError, match="same non-zero count"):
        uneven.targets()


def test_jepa_with_two_masks_averages_their_losses(synth) -> None:  # noqa: ANN001
    cfg = synth_config("data.short=64", objective="jepa")
    torch.manual_seed(0)
    model, _ = build_model(cfg, mpt.get_modality("synth"))
    model.eval()
    tokens = model.backbone.tokens(collate_samples([synth.make_sample(i, cfg.data) for i in range(2)]))
    n = tokens.num_tokens
    small = Mask(keep=torch.arange(4, n).expand(2, -1), pred=torch.arange(0, 4).expand(2, -1))
    large = Mask(keep=torch.arange(0, 6).expand(2, -1), pred=torch.arange(6, n).expand(2, -1))
    both = model(tokens, [small, large]).loss
    one, two = model(tokens, [small]).loss, model(tokens, [large]).loss
    assert both.item() == pytest.approx((one.item() + two.item()) / 2, rel=1e-6)
    assert one.item() != pytest.approx(two.item())


def test_mae_takes_one_mask_per_step(synth) -> None:  # noqa: ANN001
    cfg = synth_config()
    model, _ = build_model(cfg, mpt.get_modality("synth"))
    tokens = model.backbone.tokens(collate_samples([synth.make_sample(i, cfg.data) for i in range(2)]))
    m = Mask(keep=torch.tensor([[0, 1]] * 2), pred=torch.tensor([[2, 3]] * 2))
    with pytest.raises(mpt.ConfigError, match="mae.mask.name"):
        model(tokens, [m, m])


def test_a_plugin_masker_and_objective_from_the_cli(synth, tmp_path: Path) -> None:  # noqa: ANN001
    listed = invoke("list")
    assert listed.exit_code == 0, listed.output
    assert "stripes" in listed.stdout and "meanpatch" in listed.stdout
    out = tmp_path / "run"
    result = invoke("pretrain", "--modality", "synth", "--objective", "meanpatch", "--set", "meanpatch.mask.every=3",
                    "--set", "data.short=64", "--max-steps", "4", "--out", out)  # stripes ignores padding
    assert result.exit_code == 0, result.output
    cfg_text = (out / "config.yaml").read_text()
    assert "meanpatch:" in cfg_text and "name: stripes" in cfg_text and "every: 3" in cfg_text
    metrics = read_metrics(out)
    assert metrics[-1]["step"] == 4 and abs(metrics[-1]["mask_ratio"] - 2 / 3) < 0.05
    bad = invoke("pretrain", "--modality", "synth", "--objective", "meanpatch", "--set", "meanpatch.mask.every=1",
                 "--max-steps", "1", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "meanpatch.mask.every" in bad.stderr
    unknown = invoke("pretrain", "--modality", "synth", "--objective", "nope", "--out", tmp_path / "x")
    assert unknown.exit_code == 2 and "meanpatch" in unknown.stderr and "jepa" in unknown.stderr


def test_a_grid_masker_on_a_token_set_fails_before_training(synth, tmp_path: Path) -> None:  # noqa: ANN001
    result = invoke("pretrain", "--modality", "synth", "--objective", "jepa", "--set", "jepa.mask.name=multiblock",
                    "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "jepa.mask.name" in result.stderr and "multiblock" in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or not (tmp_path / "run" / "metrics.jsonl").read_text()


def test_an_iterable_dataset_trains_and_resumes_by_replaying_the_stream(synth, tmp_path: Path) -> None:  # noqa: ANN001
    modality = mpt.get_modality("synth")
    sets = ("data.stream=true", "train.max_steps=12", "train.log_every=1", "train.checkpoint_every=6",
            "data.samples=40")
    full = pretrain(synth_config(*sets), modality, tmp_path / "full", progress=False)
    assert full.steps == 12
    losses = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "full")}
    pretrain(synth_config(*sets[:-4], "train.max_steps=6", "train.log_every=1", "train.checkpoint_every=6",
                          "data.samples=40"), modality, tmp_path / "part", progress=False)
    pretrain(synth_config(*sets), modality, tmp_path / "part", resume=True, progress=False)
    resumed = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "part")}
    assert [resumed[s] for s in range(7, 13)] == pytest.approx([losses[s] for s in range(7, 13)], rel=1e-6)


def test_a_streaming_run_needs_max_steps(synth, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = synth_config("data.stream=true", "train.epochs=1")
    with pytest.raises(mpt.ConfigError, match="train.max_steps"):
        pretrain(cfg, mpt.get_modality("synth"), tmp_path / "run", progress=False)


def test_a_plugin_for_api_1_gets_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mpt_old_api_xyz.py").write_text(textwrap.dedent("""
        from mpt.contract import Modality
        class Old(Modality):
            name = "oldapi"
            plugin_api = 1
    """))
    info = tmp_path / "mpt_old-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mpt-old\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mpt.modalities]\noldapi = mpt_old_api_xyz:Old\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info_:
        mpt.get_modality("oldapi")
    msg = str(info_.value)
    assert "mpt-old" in msg and "plugin API 1" in msg and "collate returns an mpt.Batch" in msg


def test_a_tokenizer_attribute_hiding_a_contract_method_is_named(synth) -> None:  # noqa: ANN001
    class BufferNamedCard(synth.SynthTokenizer):
        def __init__(self, config, dim):  # noqa: ANN001, ANN204
            super().__init__(config, dim)
            self.register_buffer("card", torch.zeros(1))  # torch itself refuses: a bare KeyError before

    class ModuleNamedEmbed(synth.SynthTokenizer):
        def __init__(self, config, dim):  # noqa: ANN001, ANN204
            super().__init__(config, dim)
            self.embed = torch.nn.Linear(2, 2)  # silently hidden by the method otherwise

    modality = mpt.get_modality("synth")
    cfg = synth_config()
    for cls, pattern in ((BufferNamedCard, "named 'card'.*Tokenizer.card"),
                         (ModuleNamedEmbed, "submodule named 'embed'.*Tokenizer.embed")):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(modality), "tokenizer", lambda self, config, dim, c=cls: c(config, dim))
            with pytest.raises(PluginError, match=pattern):
                build_model(cfg, modality)


def test_a_batch_moves_and_slices_with_its_metadata() -> None:
    from mpt.contract import Sample

    samples = [Sample(input=torch.ones(n, 2) * n, source=f"s{n}", label=n % 2, meta={"gsd": 10.0 * n, "tag": f"t{n}"})
               for n in (3, 5)]
    batch = collate_samples(samples)
    assert batch.tensor.shape == (2, 5, 2) and batch.meta["length"].tolist() == [3, 5]
    assert batch.tensor[0, 3:].abs().sum() == 0  # padded with zeros
    assert batch.meta["gsd"].tolist() == [30.0, 50.0] and batch.meta["tag"] == ["t3", "t5"]
    one = batch[[1]]
    assert one.sources == ["s5"] and one.meta["tag"] == ["t5"] and one.labels.tolist() == [1]
    moved = batch.to("cpu", torch.float64)
    assert moved.tensor.dtype == torch.float64 and moved.meta["length"].dtype == torch.long
    assert Batch.of(torch.zeros(4, 1)).batch_size == 4
    with pytest.raises(ValueError, match="differ beyond their first axis"):
        collate_samples([Sample(input=torch.zeros(2, 3)), Sample(input=torch.zeros(2, 4))])


RSS_SCRIPT = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {synth!r})
from mpt_synth import NpyFolder
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = NpyFolder(Path({folder!r}), skip_bad_files=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
item = ds[len(ds) - 1]
print(len(ds), (after - before) / 1024, tuple(item.input.shape))
"""


def test_opening_a_large_folder_reads_no_data(tmp_path: Path) -> None:
    """A folder of 40 × 8 MiB files: constructing the dataset raises the peak RSS by far less than one file."""
    folder = tmp_path / "big"
    folder.mkdir()
    block = np.random.default_rng(0).standard_normal((700_000, 3)).astype(np.float32)  # 8 MiB
    for i in range(40):
        np.save(folder / f"f{i:03d}.npy", block)
    script = RSS_SCRIPT.format(synth=str(SYNTH), folder=str(folder))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    n, grown_mib, shape = out.stdout.split(maxsplit=2)
    assert int(n) == 40 and shape.strip() == "(64, 3)"
    assert float(grown_mib) < 4.0, out.stdout


def test_fitted_statistics_land_in_the_config_and_card_and_are_replayed_on_load(synth, tmp_path: Path) -> None:  # noqa: ANN001
    import json

    import yaml

    modality = mpt.get_modality("synth")
    cfg = synth_config("train.max_steps=2", "data.samples=16")
    pretrain(cfg, modality, tmp_path / "run", progress=False)
    series = torch.cat([s.input * s.meta["gain"] for s in (synth.make_sample(i, cfg.data) for i in range(16))])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["tokenizer"]
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())["tokenizer"]["config"]
    assert saved["mean"] == pytest.approx(series.mean(0).tolist(), abs=1e-6)
    assert saved["std"] == pytest.approx(series.std(0, unbiased=False).tolist(), rel=1e-5)
    assert card["mean"] == saved["mean"] and card["std"] == saved["std"]
    enc = mpt.load_encoder(tmp_path / "run" / "encoder")
    batch = collate_samples([synth.make_sample(0, cfg.data)])
    normed = enc.tokenizer.normalize(batch).tensor
    torch.testing.assert_close(normed.mean((0, 1)), ((series[:64] - series.mean(0)) / series.std(0, unbiased=False))
                               .mean(0), atol=1e-4, rtol=0)
    # values given by the recipe or --set are kept, not refitted
    fixed = synth_config("train.max_steps=2", "data.samples=16", "tokenizer.mean=[0,0,0]", "tokenizer.std=[1,1,1]")
    pretrain(fixed, modality, tmp_path / "fixed", progress=False)
    assert yaml.safe_load((tmp_path / "fixed" / "config.yaml").read_text())["tokenizer"]["mean"] == [0, 0, 0]


def test_fit_moments_ignores_nan_and_matches_numpy() -> None:
    from mpt.contract import Sample
    from mpt.stats import fit_moments

    rng = np.random.default_rng(0)
    parts = [rng.normal(3, 2, size=(n, 2)).astype(np.float32) for n in (5, 17, 1, 40)]
    parts[1][3, 0] = np.nan
    data = [Sample(input=torch.from_numpy(p)) for p in parts]
    mean, std = fit_moments(data, lambda s: s.input, progress=False)  # a list is a map-style dataset
    allv = np.concatenate(parts)
    np.testing.assert_allclose(mean.numpy(), np.nanmean(allv, 0), rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), np.nanstd(allv, 0), rtol=1e-5)
    with pytest.raises(mpt.DataError, match="no finite value"):
        fit_moments([Sample(input=torch.full((3, 1), float("nan")))], lambda s: s.input, progress=False)


def test_docs_config_md_is_the_generated_reference() -> None:
    """docs/config.md is `mpt config --markdown`: regenerate it when a config dataclass changes."""
    from mpt.reference import markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text().strip() == markdown().strip(), "run: mpt config --markdown > docs/config.md"
    assert "| `optim.lr` | float | 0.00015 | peak learning rate" in doc.read_text()
