"""Units of mpt-core on a toy modality: encoder, targets, EMA, optimiser groups, schedule,
checkpoints and config parsing."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

import mpt
import mpt.checkpoint as ckpt_mod
from mpt.backbone import Backbone, build_backbone
from mpt.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from mpt.config import (
    JEPAConfig,
    MAEConfig,
    OptimConfig,
    TrainConfig,
    apply_set,
    deep_merge,
    parse,
)
from mpt.contract import Batch, Mask, Tokenizer, TokenSet
from mpt.encoder import Transformer
from mpt.errors import CheckpointError, ConfigError, DataError
from mpt.objectives import JEPA, MAE
from mpt.optim import create_optimizer, lr_at, param_groups
from mpt.targets import PatchTarget

D, P = 16, 6  # model width, values per patch


class ToyTokenizer(Tokenizer):
    """A 1-D sequence of patches ``[B, N, P]``; coordinates are the token indices."""

    coord_dim = 1
    pos_kind = "mlp"
    grid_axes = 1

    def __init__(self, dim: int) -> None:
        self.patch_shape = (P,)
        super().__init__(dim)
        self.proj = nn.Linear(P, dim)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("calls", torch.zeros(1))

    def tokenize(self, batch: Batch) -> TokenSet:
        x = batch.tensor
        b, n = x.shape[:2]
        coords = torch.arange(n, dtype=torch.float32).expand(b, n).unsqueeze(-1)
        return TokenSet(patches=x, coords=coords, grid=(n,))

    def embed(self, tokens: TokenSet) -> Tensor:
        return self.norm(self.proj(tokens.patches))

    def card(self) -> dict[str, Any]:
        return {}


def toy_backbone(cls_token: bool = False, depth: int = 1) -> Backbone:
    return Backbone(ToyTokenizer(D), Transformer(D, depth, 2, cls_token=cls_token))


def toy_mask(b: int, n: int, n_keep: int, seed: int = 0) -> Mask:
    order = torch.rand(b, n, generator=torch.Generator().manual_seed(seed)).argsort(1)
    return Mask(keep=order[:, :n_keep].sort(1).values, pred=order[:, n_keep:].sort(1).values)


# ----------------------------------------------------------------------------------------------
# encoder


def test_cls_token_adds_one_output_token() -> None:
    torch.manual_seed(0)
    x, pos = torch.randn(2, 5, D), torch.randn(2, 5, D)
    assert Transformer(D, 1, 2)(x, pos).shape == (2, 5, D)
    with_cls = Transformer(D, 1, 2, cls_token=True)
    assert with_cls.num_prefix == 1
    assert with_cls(x, pos).shape == (2, 6, D)
    # the backbone strips the CLS token from .tokens and pools with it
    backbone = toy_backbone(cls_token=True).eval()
    batch = torch.randn(2, 5, P)
    full = backbone.encode(backbone.tokens(batch))
    assert full.shape == (2, 6, D)
    out = backbone(batch)
    torch.testing.assert_close(out.tokens, full[:, 1:])
    torch.testing.assert_close(out.pooled, full[:, 0])


def test_pos_every_block_changes_the_output() -> None:
    torch.manual_seed(0)
    once = Transformer(D, 2, 2).eval()
    every = Transformer(D, 2, 2, pos_every_block=True).eval()
    every.load_state_dict(once.state_dict())
    x, pos = torch.randn(2, 5, D), torch.randn(2, 5, D)
    a, b = once(x, pos), every(x, pos)
    assert not torch.allclose(a, b, atol=1e-4)
    # with a zero position embedding the two are the same network
    zero = torch.zeros_like(pos)
    torch.testing.assert_close(once(x, zero), every(x, zero))


def test_padding_tokens_do_not_change_valid_features() -> None:
    torch.manual_seed(0)
    model = Transformer(D, 2, 2, cls_token=True).eval()
    x, pos = torch.randn(2, 6, D), torch.randn(2, 6, D)
    valid = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    out = model(x, pos, valid)
    x2, pos2 = x.clone(), pos.clone()
    x2[0, 4:] = torch.randn(2, D) * 10
    pos2[0, 4:] = torch.randn(2, D) * 10
    out2 = model(x2, pos2, valid)
    # CLS + the 4 valid tokens of sample 0 are unchanged, and equal to encoding them alone
    torch.testing.assert_close(out2[0, :5], out[0, :5], atol=1e-6, rtol=0)
    alone = model(x[:1, :4], pos[:1, :4])
    torch.testing.assert_close(out[0, :5], alone[0], atol=1e-5, rtol=1e-5)
    # without the mask the padding would leak into them
    leaked = model(x2, pos2)
    assert not torch.allclose(leaked[0, :5], out[0, :5], atol=1e-4)


# ----------------------------------------------------------------------------------------------
# MAE target and loss


def test_patch_target_normalisation_by_hand() -> None:
    torch.manual_seed(0)
    patches = torch.randn(2, 3, 2, 4) * 3 + 1  # [B, Np, *patch_shape] with 8 values per patch
    pred = torch.randn(2, 3, 8)
    expected = 0.0
    for b in range(2):
        for t in range(3):
            vals = [float(v) for v in patches[b, t].flatten()]
            mean = sum(vals) / len(vals)
            var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)  # unbiased
            target = [(v - mean) / math.sqrt(var + 1e-6) for v in vals]
            expected += sum((float(p) - q) ** 2 for p, q in zip(pred[b, t], target, strict=True))
    expected /= 2 * 3 * 8
    assert PatchTarget(normalize=True).loss(pred, patches).item() == pytest.approx(expected, rel=1e-5)
    raw = ((pred - patches.flatten(2)) ** 2).mean().item()
    assert PatchTarget(normalize=False).loss(pred, patches).item() == pytest.approx(raw, rel=1e-6)
    # reconstruct() inverts the normalisation
    tgt = PatchTarget(normalize=True)
    torch.testing.assert_close(tgt.reconstruct(tgt._target(patches)[0], patches), patches, atol=1e-4, rtol=1e-4)


def test_patch_target_per_channel_is_videomae_target() -> None:
    """``per_channel``: VideoMAE's target (``engine_for_pretraining.py``): videos as
    ``b (t h w) (p0 p1 p2) c``, mean/std over the tubelet's pixels per channel (unbiased, +1e-6)."""
    torch.manual_seed(0)
    patches = torch.randn(2, 5, 3, 2, 4, 4) * 2 + 0.5  # [B, Nt, C, t, p, p]
    patches[0, 0, 1] = 0.25  # a flat channel of one tubelet: standardised to 0, not NaN
    pred = torch.randn(2, 5, 3 * 2 * 4 * 4)
    cl = patches.flatten(3).transpose(2, 3)  # [B, Nt, t*p*p, C]: VideoMAE's layout
    mean, var = cl.mean(dim=-2, keepdim=True), cl.var(dim=-2, unbiased=True, keepdim=True)
    target = (cl - mean) / (var + 1e-6).sqrt()
    target = target.transpose(2, 3).flatten(2)  # back to channel-first [B, Nt, C*t*p*p]
    tgt = PatchTarget(normalize=True, per_channel=True)
    assert tgt.loss(pred, patches).item() == pytest.approx(((pred - target) ** 2).mean().item(), rel=1e-5)
    whole = PatchTarget(normalize=True).loss(pred, patches).item()
    assert whole != pytest.approx(tgt.loss(pred, patches).item(), rel=1e-3)  # per token is another target
    torch.testing.assert_close(tgt.reconstruct(target, patches), patches, atol=1e-3, rtol=1e-3)


class RecordingTarget(PatchTarget):
    def loss(self, pred: Tensor, patches: Tensor, weight: Tensor | None = None) -> Tensor:
        self.seen = (pred.detach().clone(), patches.clone(), weight)
        return super().loss(pred, patches, weight)


def test_mae_loss_is_on_the_predicted_tokens_only() -> None:
    torch.manual_seed(0)
    target = RecordingTarget(normalize=False)
    mae = MAE(toy_backbone(), target, MAEConfig(decoder_dim=D, decoder_depth=1, decoder_heads=2)).eval()
    batch = torch.randn(2, 8, P)
    tokens = mae.backbone.tokens(batch)
    mask = toy_mask(2, 8, n_keep=3)
    out = mae(tokens, [mask])
    pred, patches, _ = target.seen
    assert out.pred.shape == (2, 5, P)
    torch.testing.assert_close(patches, torch.stack([batch[b, mask.pred[b]] for b in range(2)]))
    assert out.loss.item() == pytest.approx(((pred - patches) ** 2).mean().item(), rel=1e-6)
    # changing what sits at the predicted positions changes only the target, not the prediction
    batch2 = batch.clone()
    batch2[torch.arange(2)[:, None], mask.pred] += 5.0
    out2 = mae(mae.backbone.tokens(batch2), [mask])
    torch.testing.assert_close(out2.pred, out.pred)
    assert out2.loss.item() != pytest.approx(out.loss.item())


def test_mae_zero_mode_keeps_hidden_tokens_in_place_with_zeroed_contents() -> None:
    """PatchTST / SimMIM: the encoder sees every position, hidden ones zeroed; a linear head predicts."""
    torch.manual_seed(0)
    target = RecordingTarget(normalize=False)
    mae = MAE(toy_backbone(), target, MAEConfig(masked_tokens="zero")).eval()
    assert isinstance(mae.decoder, nn.Linear)
    batch = torch.randn(2, 8, P)
    mask = toy_mask(2, 8, n_keep=5)
    out = mae(mae.backbone.tokens(batch), [mask])
    assert out.pred.shape == (2, 3, P)
    zeroed = batch.clone()
    zeroed[torch.arange(2)[:, None], mask.pred] = 0.0
    latent = mae.backbone.encode(mae.backbone.tokens(zeroed))
    expected = mae.decoder(torch.stack([latent[b, mask.pred[b]] for b in range(2)]))
    torch.testing.assert_close(out.pred, expected)
    # the hidden contents never reach the prediction; they are only the target
    batch2 = batch.clone()
    batch2[torch.arange(2)[:, None], mask.pred] += 5.0
    out2 = mae(mae.backbone.tokens(batch2), [mask])
    torch.testing.assert_close(out2.pred, out.pred)
    assert out2.loss.item() != pytest.approx(out.loss.item())


class FoldingTokenizer(ToyTokenizer):
    """Channel independence in miniature: ``[B, C, N, P]`` → ``C`` rows of ``N`` tokens per sample."""

    def tokenize(self, batch: Batch) -> TokenSet:
        x = batch.tensor
        b, c, n = x.shape[:3]
        coords = torch.arange(n, dtype=torch.float32).expand(b * c, n).unsqueeze(-1)
        valid = ~x.isnan().all(-1).reshape(b * c, n)
        return TokenSet(patches=x.reshape(b * c, n, P), coords=coords, grid=(n,),
                        valid=None if bool(valid.all()) else valid, rows_per_sample=c)

    def embed(self, tokens: TokenSet) -> Tensor:
        return self.norm(self.proj(tokens.patches.nan_to_num(0.0)))


def test_backbone_rejoins_folded_rows_per_sample() -> None:
    torch.manual_seed(0)
    backbone = Backbone(FoldingTokenizer(D), Transformer(D, 1, 2)).eval()
    batch = torch.randn(2, 3, 4, P)  # B=2 samples, C=3 channels, N=4 tokens each
    out = backbone(batch)
    assert out.tokens.shape == (2, 12, D) and out.pooled.shape == (2, D)
    rows = backbone.encode(backbone.tokens(batch))  # [6, 4, D]
    torch.testing.assert_close(out.tokens[1, 4:8], rows[4])  # sample 1, channel 1
    torch.testing.assert_close(out.pooled, rows.reshape(2, 12, D).mean(1))
    # each channel is encoded on its own: changing channel 2 leaves channels 0 and 1 unchanged
    other = batch.clone()
    other[:, 2] += 3.0
    torch.testing.assert_close(backbone(other).tokens[:, :8], out.tokens[:, :8])


def test_missing_values_pass_only_where_the_tokenizer_handles_them() -> None:
    from mpt.errors import DataError

    batch = torch.randn(2, 3, 4, P)
    batch[0, 1, 2:] = float("nan")  # two padding tokens in channel 1 of sample 0
    toy = toy_backbone().eval()
    with pytest.raises(DataError, match="NaN/Inf"):
        toy(torch.full((2, 4, P), float("nan")))
    folding = Backbone(FoldingTokenizer(D), Transformer(D, 1, 2)).eval()
    with pytest.raises(DataError, match="NaN/Inf"):
        folding(batch)  # FoldingTokenizer does not declare missing_values
    FoldingTokenizer.missing_values = True
    try:
        out = folding(batch)
        assert torch.isfinite(out.tokens).all()
        # pooled mean skips the padding tokens
        rows = folding.encode(folding.tokens(batch)).reshape(2, 12, D)
        torch.testing.assert_close(out.pooled[0], torch.cat([rows[0, :6], rows[0, 8:]]).mean(0))
        inf = batch.clone()
        inf[1, 0, 0, 0] = float("inf")
        with pytest.raises(DataError, match="±Inf"):
            folding(inf)
    finally:
        FoldingTokenizer.missing_values = False


def test_attention_over_only_padding_stays_finite() -> None:
    torch.manual_seed(0)
    model = Transformer(D, 1, 2).eval()
    x, pos = torch.randn(2, 3, D), torch.randn(2, 3, D)
    valid = torch.tensor([[False, False, False], [True, False, True]])
    out = model(x, pos, valid)
    assert torch.isfinite(out).all()


def test_jepa_loss_ignores_padding_targets() -> None:
    torch.manual_seed(0)
    backbone = Backbone(FoldingTokenizer(D), Transformer(D, 1, 2))
    jepa = JEPA(backbone, JEPAConfig(predictor_dim=D, predictor_depth=1, predictor_heads=2)).eval()
    batch = torch.randn(1, 2, 6, P)
    batch[0, 1, 3:] = float("nan")  # channel 1: tokens 3..5 are padding
    tokens = backbone.tokenizer.tokenize(Batch.of(batch))
    mask = Mask(keep=torch.tensor([[0, 1], [0, 1]]), pred=torch.tensor([[2, 4], [2, 4]]))
    out = jepa(tokens, [mask])
    with torch.no_grad():
        full = jepa.teacher.encode(tokens)
        target = torch.nn.functional.layer_norm(full, (D,))
        per_token = torch.nn.functional.smooth_l1_loss(
            out.pred, torch.stack([target[r, mask.pred[r]] for r in range(2)]), reduction="none").mean(-1)
    # rows: channel 0 predicts tokens 2 and 4 (valid); channel 1 predicts 2 (valid) and 4 (padding)
    expected = (per_token[0, 0] + per_token[0, 1] + per_token[1, 0]) / 3
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------------------------------------------
# JEPA teacher


def jepa_with_diverged_student() -> JEPA:
    torch.manual_seed(0)
    jepa = JEPA(toy_backbone(), JEPAConfig(predictor_dim=D, predictor_depth=1, predictor_heads=2))
    with torch.no_grad():
        for p in jepa.backbone.parameters():
            p.add_(torch.randn_like(p))
        for b in jepa.backbone.buffers():
            b.add_(3.0)
    return jepa


def test_update_teacher_momentum() -> None:
    for momentum in (1.0, 0.0, 0.5):
        jepa = jepa_with_diverged_student()
        teacher0 = [p.clone() for p in jepa.teacher.parameters()]
        student = [p.clone() for p in jepa.backbone.parameters()]
        assert any(not torch.equal(t, s) for t, s in zip(teacher0, student, strict=True))
        jepa.update_teacher(momentum)
        for t, t0, s in zip(jepa.teacher.parameters(), teacher0, student, strict=True):
            assert not t.requires_grad
            if momentum == 1.0:
                assert torch.equal(t, t0)
            elif momentum == 0.0:
                torch.testing.assert_close(t, s, atol=0, rtol=0)
            else:
                torch.testing.assert_close(t, (t0 + s) / 2, atol=1e-6, rtol=1e-6)
        for tb, sb in zip(jepa.teacher.buffers(), jepa.backbone.buffers(), strict=True):
            assert torch.equal(tb, sb)  # buffers are copied whatever the momentum
        for p in jepa.backbone.parameters():
            assert p.requires_grad


# ----------------------------------------------------------------------------------------------
# optimiser


def test_param_groups_split_decay_and_no_decay() -> None:
    mae = MAE(toy_backbone(cls_token=True), PatchTarget(),
              MAEConfig(decoder_dim=D, decoder_depth=1, decoder_heads=2))
    decay, no_decay = param_groups(mae, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in mae.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert not decay_names & no_decay_names
    assert decay_names | no_decay_names == set(names.values())
    for must in ("backbone.encoder.cls_token", "decoder.mask_token", "backbone.encoder.norm.weight",
                 "backbone.encoder.norm.bias", "backbone.tokenizer.proj.bias",
                 "backbone.tokenizer.norm.weight", "backbone.encoder.blocks.0.attn.qkv.bias",
                 "decoder.head.bias"):
        assert must in no_decay_names, must
    for must in ("backbone.tokenizer.proj.weight", "backbone.encoder.blocks.0.attn.qkv.weight",
                 "backbone.encoder.blocks.0.mlp.fc1.weight", "decoder.embed.weight", "decoder.head.weight"):
        assert must in decay_names, must
    linear_weights = {f"{n}.weight" for n, m in mae.named_modules() if isinstance(m, nn.Linear)}
    assert linear_weights == decay_names


def test_frozen_teacher_is_not_optimised() -> None:
    jepa = JEPA(toy_backbone(), JEPAConfig(predictor_dim=D, predictor_depth=1, predictor_heads=2))
    opt = create_optimizer(jepa, OptimConfig())
    optimised = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in jepa.teacher.parameters()}
    assert {id(p) for p in jepa.backbone.parameters()} <= optimised


def test_lr_schedule() -> None:
    total, warmup, lr, min_lr = 100, 10, 1e-3, 1e-5
    lrs = [lr_at(s, total, warmup, lr, min_lr) for s in range(total + 1)]
    steps = [lrs[i + 1] - lrs[i] for i in range(warmup - 1)]
    assert lrs[0] > 0
    assert all(d == pytest.approx(lr / warmup) for d in steps)  # linear warm-up
    assert lrs[warmup - 1] == pytest.approx(lr) and lrs[warmup] == pytest.approx(lr)
    assert lrs[total] == pytest.approx(min_lr)
    assert lrs[total - 1] - min_lr < 1e-3 * (lr - min_lr)
    after = lrs[warmup:]
    assert all(a >= b for a, b in pairwise(after)) and after[0] > after[-1]
    assert all(min_lr <= v <= lr * (1 + 1e-12) for v in lrs)
    # no warm-up: starts at lr
    assert lr_at(0, total, 0, lr, min_lr) == pytest.approx(lr)


# ----------------------------------------------------------------------------------------------
# checkpoints


def tiny_model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    return model, opt


def test_save_checkpoint_keeps_the_last_k(tmp_path: Path) -> None:
    model, opt = tiny_model_and_optimizer()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, {"config": {}}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-4", "step-5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-4", "step-5"]
    model2, opt2 = tiny_model_and_optimizer()
    with torch.no_grad():
        for p in model2.parameters():
            p.zero_()
    assert load_checkpoint(tmp_path / "step-5", model2, opt2)["step"] == 5
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt = tiny_model_and_optimizer()
    save_checkpoint(tmp_path, 1, model, opt, {"config": {}}, keep_last=1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "step-1").iterdir()}

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", crash)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model, opt, {"config": {}}, keep_last=1)
    monkeypatch.undo()
    assert not (tmp_path / "step-2").exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-1"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "step-1").iterdir()} == before
    model2, opt2 = tiny_model_and_optimizer()
    assert load_checkpoint(tmp_path / "step-1", model2, opt2)["step"] == 1
    assert load_file(str(tmp_path / "step-1" / "model.safetensors")).keys() == model.state_dict().keys()


def test_load_checkpoint_rejects_another_shape(tmp_path: Path) -> None:
    model, opt = tiny_model_and_optimizer()
    save_checkpoint(tmp_path, 1, model, opt, {"config": {}}, keep_last=1)
    other = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5))
    with pytest.raises(CheckpointError, match=r"0\.weight"):
        load_checkpoint(tmp_path / "step-1", other, torch.optim.AdamW(other.parameters()))


# ----------------------------------------------------------------------------------------------
# config


def test_parse_coerces_strings_to_numbers() -> None:
    cfg = parse(OptimConfig, {"lr": "1e-3", "min_lr": 0, "betas": ["0.9", 0.99]})
    assert cfg.lr == 0.001 and isinstance(cfg.lr, float)
    assert isinstance(cfg.min_lr, float)
    assert cfg.betas == (0.9, 0.99)
    assert parse(TrainConfig, {"batch_size": "16"}).batch_size == 16
    # what `--set optim.lr=1e-3` gives: YAML reads 1e-3 (no dot) as a string
    raw = apply_set({}, "optim.lr=1e-3")
    assert raw == {"optim": {"lr": "1e-3"}}
    assert parse(OptimConfig, raw["optim"], "optim").lr == 0.001


@pytest.mark.parametrize(("cls", "data", "key", "text"), [
    (TrainConfig, {"batch_size": True}, "train.batch_size", "expected an integer"),
    (TrainConfig, {"batch_size": 2.5}, "train.batch_size", "expected an integer"),
    (TrainConfig, {"batch_size": 0}, "train.batch_size", ">= 1"),
    (OptimConfig, {"lr": True}, "optim.lr", "expected a number"),
    (OptimConfig, {"lr": "nan"}, "optim.lr", "finite"),
    (OptimConfig, {"betas": [0.9]}, "optim.betas", "2 values"),
    (TrainConfig, {"precision": "fp8"}, "train.precision", "no, bf16, fp16"),
    (TrainConfig, {"seeed": 1}, "train.seeed", "allowed keys: batch_size"),
])
def test_parse_rejects(cls: type, data: dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(cls, data, key.split(".")[0])
    assert info.value.key == key
    assert text in str(info.value)


def test_apply_set_nests_and_keeps_siblings() -> None:
    assert apply_set({}, "a.b.c=3") == {"a": {"b": {"c": 3}}}
    base = {"a": {"x": 1, "b": {"y": 2}}, "z": [1]}
    out = apply_set(base, "a.b.c=[1, 2]")
    assert out == {"a": {"x": 1, "b": {"y": 2, "c": [1, 2]}}, "z": [1]}
    assert base == {"a": {"x": 1, "b": {"y": 2}}, "z": [1]}  # not modified
    assert apply_set({"a": {"b": 1}}, "a.b=") == {"a": {"b": ""}}
    assert apply_set({}, "mask={name: block, ratio: 0.5}") == {"mask": {"name": "block", "ratio": 0.5}}
    for bad in ("a.b", "=3", "a..b=1"):
        with pytest.raises(ConfigError):
            apply_set({}, bad)


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": 3, "f": {"g": 1}}
    other = {"a": {"c": {"h": 4}}, "e": {"new": 5}, "f": 7}
    out = deep_merge(base, other)
    assert out == {"a": {"b": 1, "c": {"d": 2, "h": 4}}, "e": {"new": 5}, "f": 7}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": 3, "f": {"g": 1}}
    assert other == {"a": {"c": {"h": 4}}, "e": {"new": 5}, "f": 7}
    out["a"]["b"] = 99
    assert base["a"]["b"] == 1


def test_a_later_layer_replaces_the_other_run_length_key(tmp_path) -> None:  # noqa: ANN001
    from mpt.config import build_config
    from mpt.errors import ConfigError

    modality = mpt.get_modality("pointcloud")
    cfg = build_config(modality, "point-mae", sets=["optim.warmup_steps=2"], flags={"train": {"max_steps": 5}})
    assert (cfg.train.max_steps, cfg.train.epochs) == (5, None)  # the recipe says epochs: 300
    assert (cfg.optim.warmup_steps, cfg.optim.warmup_epochs) == (2, None)  # the recipe says warmup_epochs: 10
    cfg = build_config(modality, "demo", sets=["train.epochs=2"])  # the demo recipe says max_steps: 300
    assert (cfg.train.max_steps, cfg.train.epochs) == (None, 2.0)
    both = tmp_path / "both.yaml"
    both.write_text("train: {max_steps: 10, epochs: 2}\n")
    with pytest.raises(ConfigError, match="train.epochs.*either train.max_steps or train.epochs"):
        build_config(modality, "demo", config_file=both)


def test_jepa_teacher_targets_are_deterministic_in_training_mode() -> None:
    """Drop-path is active in the student but never in the EMA teacher that makes the targets."""
    from mpt.config import build_config
    from mpt.objectives import JEPA
    from mpt.testing import Kit

    kit = Kit("pointcloud", ("tokenizer.num_groups=8", "tokenizer.group_size=8", "tokenizer.hidden=16",
                             "data.num_points=128", "data.cache_points=256"))
    cfg = build_config(kit.modality, None, None, (*kit.sets, "model.drop_path=0.5"), {"objective": "jepa"})
    backbone = build_backbone(kit.modality, cfg.tokenizer, cfg.model)
    model = JEPA(backbone, cfg.objectives["jepa"]).train()
    assert model.backbone.training and model.teacher.training
    assert not any(m.training for m in model.teacher.modules() if "DropPath" in type(m).__name__)
    tokens = backbone.tokens(kit.batch)
    with torch.no_grad():
        a, b = model.teacher.encode(tokens), model.teacher.encode(tokens)
        s1, s2 = model.backbone.encode(tokens), model.backbone.encode(tokens)
    assert torch.equal(a, b)
    assert not torch.equal(s1, s2)  # the student does drop paths


def test_patch_target_ignores_missing_values() -> None:
    """NaN marks a missing value: it is no target, and the per-token statistics skip it."""
    torch.manual_seed(0)
    patches = torch.randn(2, 3, 8)
    pred = torch.randn(2, 3, 8)
    holes = patches.clone()
    holes[0, 1, 2:5] = float("nan")
    holes[1, 2] = float("nan")  # a whole token missing (padding)
    observed = ~holes.isnan()
    for normalize in (False, True):
        tgt = PatchTarget(normalize=normalize)
        loss = tgt.loss(pred, holes)
        assert torch.isfinite(loss)
        # only the observed values count: changing the prediction where values are missing changes nothing
        moved = pred.clone()
        moved[~observed] += 100.0
        assert tgt.loss(moved, holes).item() == pytest.approx(loss.item(), rel=1e-6)
        # and the loss differs from one that would treat the holes as zeros
        assert tgt.loss(pred, holes.nan_to_num(0.0)).item() != pytest.approx(loss.item(), rel=1e-3)
    raw = ((pred - patches) ** 2)[observed].mean().item()
    assert PatchTarget(normalize=False).loss(pred, holes).item() == pytest.approx(raw, rel=1e-6)
    # all-missing prediction set: zero loss, not NaN
    assert PatchTarget().loss(pred[:, :1], torch.full((2, 1, 8), float("nan"))).item() == 0.0


def test_learned_position_tables_get_no_weight_decay() -> None:
    from mpt.pos_embed import LearnedPosEmbed

    backbone = toy_backbone()
    backbone.tokenizer.pos = LearnedPosEmbed((8,), D)
    decay, no_decay = param_groups(backbone, 0.05)
    assert any(p is backbone.tokenizer.pos.table for p in no_decay["params"])
    assert not any(p is backbone.tokenizer.pos.table for p in decay["params"])


def test_explicit_and_fused_attention_agree() -> None:
    """Small heads on CPU take timm's explicit attention path; it must match the fused kernel,
    padding mask included."""
    torch.manual_seed(0)
    model = Transformer(D, 2, 2, cls_token=True).eval()  # head dim 8
    x, pos = torch.randn(2, 6, D), torch.randn(2, 6, D)
    valid = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    explicit = model(x, pos, valid)
    assert not model.blocks[0].attn.fused_attn
    model.configure_attention("cuda")  # the flag only: the tensors stay on the CPU
    fused = model(x, pos, valid)
    assert model.blocks[0].attn.fused_attn
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)


def test_pixel_statistics_checks_and_normalisation() -> None:
    from mpt.pixels import IMAGENET_MEAN, PixelNorm, channel_stats, check_pixels

    assert channel_stats(3) == (list(IMAGENET_MEAN), [0.229, 0.224, 0.225])
    assert channel_stats(2) == ([0.5, 0.5], [0.25, 0.25])
    assert channel_stats(1, [0.1], [2.0]) == ([0.1], [2.0])
    with pytest.raises(ConfigError, match=r"tokenizer\.mean.*2 values for 3 channels"):
        channel_stats(3, [0.1, 0.2])
    with pytest.raises(ConfigError, match=r"data\.std.*> 0"):
        channel_stats(1, [0.5], [0.0], key="data")
    for bad, words in [(torch.zeros(2, 3, dtype=torch.uint8), "uint8 pixels"),
                       (torch.tensor([0.5, float("nan")]), "NaN or Inf"),
                       (torch.tensor([0.0, 255.0]), "0-255"), (torch.tensor([-2.1, 0.3]), "normalised")]:
        with pytest.raises(DataError, match=words):
            check_pixels(bad)
    check_pixels(torch.rand(2, 3))
    norm = PixelNorm([0.2, 0.4], [0.5, 0.25])
    for x in (torch.rand(2, 2, 4), torch.rand(2, 2, 3, 4, 5)):  # channels on axis 1, any rank
        y = norm.standardize(x)
        torch.testing.assert_close(y[:, 1], (x[:, 1] - 0.4) / 0.25)
        torch.testing.assert_close(norm.unstandardize(y), x)
    assert not norm.state_dict()  # the card stores the statistics, not the weights


def test_patchify_cuts_the_last_axes_into_row_major_blocks_keeping_lead_axes() -> None:
    from mpt.patches import patchify, unpatchify

    x = torch.randn(2, 3, 4, 6, 8)  # [B, C, T, H, W]
    tub = patchify(x, (2, 3, 4))  # grid (2, 2, 2)
    assert tub.shape == (2, 8, 3, 2, 3, 4)
    torch.testing.assert_close(tub[:, 5], x[:, :, 2:4, 0:3, 4:8])  # token 5 = (1, 0, 1)
    torch.testing.assert_close(unpatchify(tub, (2, 2, 2)), x)
    spec = torch.randn(2, 8, 6)  # no lead axis
    torch.testing.assert_close(patchify(spec, (4, 3))[:, 1], spec[:, 0:4, 3:6])
    with pytest.raises(ValueError, match="does not hold"):
        unpatchify(tub, (2, 2, 3))


@dataclasses.dataclass
class Section:
    spacing: Literal["onemmiso", "median"] | list[float] = "onemmiso"
    patch: int | list[int] = 16
    size: int | None = None


def test_a_union_config_value_takes_the_first_form_it_fits() -> None:
    """``spacing: Literal[...] | list[float]`` (medical) and ``patch: int | list[int]``: each member
    is tried in order; a value that fits none is one error naming every form."""
    from mpt.config import parse

    assert parse(Section, {"spacing": "median"}).spacing == "median"
    assert parse(Section, {"spacing": [1, 2.5, "3"]}).spacing == [1.0, 2.5, 3.0]
    assert parse(Section, {"patch": "8"}).patch == 8 and parse(Section, {"patch": [16, 16, 4]}).patch == [16, 16, 4]
    assert parse(Section, {"size": None}).size is None
    with pytest.raises(ConfigError, match=r"spacing.*fits none of its forms.*onemmiso.*expected a list"):
        parse(Section, {"spacing": "2mm"}, "data")
    with pytest.raises(ConfigError, match="expected an integer"):
        parse(Section, {"size": "big"})
