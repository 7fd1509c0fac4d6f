"""Attention masks (:mod:`mpt.attention`) and the configurable :class:`mpt.encoder.Transformer`:
window / shifted-window attention against a brute-force reference, padding, prefix tokens (CLS +
registers), fused vs explicit attention, LayerNorm eps, LayerScale, the attention-path rule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import LayerScale
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from mpt.attention import combine, padding_mask, window_mask
from mpt.encoder import Transformer
from mpt.objectives import MaskedPredictor

D, HEADS = 16, 2  # head dim 8: timm's explicit attention on CPU
GRID = (6, 8)
WINDOW = (3, 4)
SHIFT = (1, 2)  # window // 2, as in Swin / AudioMAE


def grid_coords(batch: int, n: int, seed: int = 0) -> Tensor:
    """``[batch, n, 2]`` float grid indices: ``n`` distinct cells of GRID per sample, shuffled."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.stack([torch.randperm(GRID[0] * GRID[1], generator=g)[:n] for _ in range(batch)])
    return torch.stack([cells // GRID[1], cells % GRID[1]], dim=-1).float()


def brute_force_allowed(coords: Tensor, window: tuple[int, ...], shift: tuple[int, ...], prefix: int) -> Tensor:
    """``[B, prefix + n, prefix + n]``: pair (i, j) allowed iff same window on every axis; prefix rows
    and columns always allowed. Python loops, independent of :func:`window_mask`."""
    b, n, axes = coords.shape
    out = torch.ones(b, prefix + n, prefix + n, dtype=torch.bool)
    c = coords.long().tolist()
    for s in range(b):
        for i in range(n):
            for j in range(n):
                out[s, prefix + i, prefix + j] = all(
                    math.floor((c[s][i][a] + shift[a]) / window[a]) == math.floor((c[s][j][a] + shift[a]) / window[a])
                    for a in range(axes))
    return out


def reference_one_block(model: Transformer, x: Tensor, pos: Tensor, allowed: Tensor) -> Tensor:
    """A one-block ``model`` recomputed with plain torch ops: prefix tokens (position zero) then
    ``x + pos``, LayerNorm, q/k/v from the qkv projection, softmax over the ``allowed`` ``[B, L, L]``
    pairs only, output projection, MLP, final norm → ``[B, L, D]``."""
    blk = model.blocks[0]
    b, n, d = x.shape
    prefix = [t.expand(b, -1, -1) for t in (model.cls_token, model.reg_token) if t is not None]
    h = torch.cat([*prefix, x + pos], dim=1)
    length, heads = h.shape[1], blk.attn.num_heads

    def ln(m: nn.LayerNorm, t: Tensor) -> Tensor:
        return F.layer_norm(t, (d,), m.weight, m.bias, m.eps)

    qkv = ln(blk.norm1, h) @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
    q, k, v = qkv.reshape(b, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // heads)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    attn = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, length, d)
    h = h + attn @ blk.attn.proj.weight.T + blk.attn.proj.bias
    hidden = F.gelu(ln(blk.norm2, h) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)
    h = h + hidden @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    return ln(model.norm, h)


@pytest.mark.parametrize("device", ["cpu", "cuda"])  # explicit / fused path (the flag only)
@pytest.mark.parametrize("shift", [None, SHIFT])
def test_window_attention_matches_brute_force(shift: tuple[int, ...] | None, device: str) -> None:
    torch.manual_seed(0)
    model = Transformer(D, 1, HEADS).eval()
    model.configure_attention(device)
    coords = grid_coords(2, 30)
    x, pos = torch.randn(2, 30, D), torch.randn(2, 30, D)
    allowed = brute_force_allowed(coords, WINDOW, shift or (0, 0), prefix=0)
    assert 0.05 < allowed.float().mean() < 0.5  # neither full nor diagonal-only attention
    mask = window_mask(coords, WINDOW, shift)
    assert mask.shape == (2, 1, 30, 30) and torch.equal(mask[:, 0], allowed)
    with torch.no_grad():
        out = model(x, pos, attn_mask=mask)
        expected = reference_one_block(model, x, pos, allowed)
        full = reference_one_block(model, x, pos, torch.ones_like(allowed))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, full, atol=1e-3)  # the window mask matters


def test_shifted_windows_differ_from_plain_ones() -> None:
    coords = grid_coords(1, 48)
    assert not torch.equal(window_mask(coords, WINDOW), window_mask(coords, WINDOW, SHIFT))


def test_block_masks_apply_one_per_block() -> None:
    """AudioMAE's decoder: plain windows in block 0, shifted windows in block 1."""
    torch.manual_seed(0)
    model = Transformer(D, 2, HEADS).eval()
    coords = grid_coords(2, 30)
    plain, shifted = window_mask(coords, WINDOW), window_mask(coords, WINDOW, SHIFT)
    x, pos = torch.randn(2, 30, D), torch.randn(2, 30, D)
    with torch.no_grad():
        out = model(x, pos, block_masks=[plain, shifted])
        h = model.blocks[1](model.blocks[0](x + pos, attn_mask=plain), attn_mask=shifted)
        same = model(x, pos, attn_mask=plain)
    torch.testing.assert_close(out, model.norm(h), atol=1e-6, rtol=0)
    assert not torch.allclose(out, same, atol=1e-3)
    with pytest.raises(ValueError, match="block masks"):
        model(x, pos, block_masks=[plain])


def test_padding_with_windows_never_changes_valid_outputs() -> None:
    torch.manual_seed(0)
    model = Transformer(D, 2, HEADS).eval()
    coords = grid_coords(2, 48)  # the whole grid, shuffled
    # sample 0: rows 0-2 x cols 0-3 are padding: a whole plain window and whole shifted windows
    pad = (coords[..., 0] < 3) & (coords[..., 1] < 4)
    pad[1] = False
    valid = ~pad
    masks = [window_mask(coords, WINDOW), window_mask(coords, WINDOW, SHIFT)]  # AudioMAE: alternate
    x, pos = torch.randn(2, 48, D), torch.randn(2, 48, D)
    x2, pos2 = x.clone(), pos.clone()
    x2[pad], pos2[pad] = torch.randn(int(pad.sum()), D) * 10, torch.randn(int(pad.sum()), D) * 10
    with torch.no_grad():
        out = model(x, pos, valid, block_masks=masks)
        out2 = model(x2, pos2, valid, block_masks=masks)
        leaky = model(x2, pos2, block_masks=masks)
    assert torch.isfinite(out).all() and torch.isfinite(out2).all()  # padded rows with no valid key too
    torch.testing.assert_close(out2[valid], out[valid], atol=1e-6, rtol=0)
    assert not torch.allclose(leaky[valid], out[valid], atol=1e-3)  # without ``valid`` padding leaks in


def test_prefix_tokens_attend_everywhere_and_precede_the_outputs() -> None:
    torch.manual_seed(0)
    model = Transformer(D, 1, HEADS, cls_token=True, num_registers=2).eval()
    assert model.num_prefix == 3 and model.reg_token is not None and model.reg_token.shape == (1, 2, D)
    coords = grid_coords(2, 20)
    x, pos = torch.randn(2, 20, D), torch.randn(2, 20, D)
    mask = window_mask(coords, WINDOW, SHIFT, prefix=model.num_prefix)
    assert mask.shape == (2, 1, 23, 23)
    allowed = brute_force_allowed(coords, WINDOW, SHIFT, prefix=3)
    with torch.no_grad():
        out = model(x, pos, attn_mask=mask)
        expected = reference_one_block(model, x, pos, allowed)
    assert out.shape == (2, 23, D)  # [CLS, 2 registers, 20 tokens]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # a mask over the 20 tokens only breaks the documented convention loudly
    with pytest.raises(ValueError, match="prefix"):
        model(x, pos, attn_mask=window_mask(coords, WINDOW))


@pytest.mark.parametrize("registers", [0, 2])
def test_fused_and_explicit_paths_agree_with_padding_and_windows(registers: int) -> None:
    torch.manual_seed(0)
    model = Transformer(D, 2, HEADS, cls_token=True, num_registers=registers).eval()
    coords = grid_coords(2, 30)
    valid = torch.rand(2, 30, generator=torch.Generator().manual_seed(1)) > 0.3
    mask = window_mask(coords, WINDOW, prefix=model.num_prefix)
    shifted = window_mask(coords, WINDOW, SHIFT, prefix=model.num_prefix)
    x, pos = torch.randn(2, 30, D), torch.randn(2, 30, D)
    with torch.no_grad():
        assert not model.blocks[0].attn.fused_attn
        explicit = model(x, pos, valid, attn_mask=mask, block_masks=[None, shifted])
        model.configure_attention("cuda")
        assert model.blocks[0].attn.fused_attn
        fused = model(x, pos, valid, attn_mask=mask, block_masks=[None, shifted])
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)


def test_masked_predictor_takes_padding_and_window_masks() -> None:
    """The MAE decoder: ``valid`` over [kept, predicted]; masks over [prefix, kept, predicted]."""
    torch.manual_seed(0)
    decoder = MaskedPredictor(D, D, 2, HEADS, 4, nn.Linear(2, D), norm_eps=1e-3).eval()
    assert decoder.blocks.norm.eps == 1e-3
    coords = grid_coords(2, 30)
    keep, pred = coords[:, :20], coords[:, 20:]
    latent = torch.randn(2, 1 + 20, D)  # the encoder's CLS, then 20 kept tokens
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[0, 15:20] = False  # padding among the kept tokens
    windows = [window_mask(coords, WINDOW, prefix=1), window_mask(coords, WINDOW, SHIFT, prefix=1)]
    latent2 = latent.clone()
    latent2[0, 16:21] = torch.randn(5, D) * 10
    with torch.no_grad():
        plain = decoder(latent, keep, pred)  # the positional signature still works
        out = decoder(latent, keep, pred, valid=valid, block_masks=windows)
        out2 = decoder(latent2, keep, pred, valid=valid, block_masks=windows)
        leaky = decoder(latent2, keep, pred, block_masks=windows)
    assert out.shape == plain.shape == (2, 10, 4)
    torch.testing.assert_close(out2, out, atol=1e-6, rtol=0)
    assert not torch.allclose(leaky, out, atol=1e-4)
    assert not torch.allclose(out, plain, atol=1e-4)


def test_norm_eps_reaches_every_layer_norm() -> None:
    for eps in (1e-6, 1e-3):
        model = Transformer(D, 2, HEADS, norm_eps=eps)
        norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
        assert len(norms) == 5 and {m.eps for m in norms} == {eps}  # 2 per block + the final norm
    assert Transformer(D, 1, HEADS).norm.eps == 1e-6  # the MAE default


def test_layer_scale_is_timms_with_the_init_value() -> None:
    model = Transformer(D, 2, HEADS, layer_scale=1e-4)
    for block in model.blocks:
        for ls in (block.ls1, block.ls2):
            assert isinstance(ls, LayerScale)
            torch.testing.assert_close(ls.gamma.data, torch.full((D,), 1e-4))
    plain = Transformer(D, 1, HEADS)
    assert isinstance(plain.blocks[0].ls1, nn.Identity)


def test_block_fn_gets_timms_keyword_arguments() -> None:
    seen: list[dict] = []

    def block_fn(**kw: object) -> nn.Module:
        seen.append(kw)
        return Block(**kw)

    Transformer(D, 2, HEADS, drop_path=0.1, norm_eps=1e-3, layer_scale=0.1, block_fn=block_fn)
    assert [kw["drop_path"] for kw in seen] == pytest.approx([0.0, 0.1])
    assert {k: seen[0][k] for k in ("dim", "num_heads", "qkv_bias", "init_values")} == {
        "dim": D, "num_heads": HEADS, "qkv_bias": True, "init_values": 0.1}
    assert seen[0]["norm_layer"](D).eps == 1e-3


@pytest.mark.parametrize(("dim", "heads", "explicit_on_cpu"), [(16, 2, True), (32, 2, True), (64, 2, False),
                                                                (128, 2, False)])
def test_configure_attention_rule(dim: int, heads: int, explicit_on_cpu: bool) -> None:
    """Head dims 8, 16 → explicit on CPU; 32, 64 → fused; any head dim → fused on a GPU."""
    model = Transformer(dim, 2, heads)
    assert all(b.attn.fused_attn is not explicit_on_cpu for b in model.blocks)  # the constructor: "cpu"
    for device in ("cuda", torch.device("cuda:0")):
        model.configure_attention(device)
        assert all(b.attn.fused_attn for b in model.blocks)
    model.configure_attention(torch.device("cpu"))
    assert all(b.attn.fused_attn is not explicit_on_cpu for b in model.blocks)
    for precision in ("bf16", "fp16"):  # reduced precision on CPU: explicit whatever the head dim
        model.configure_attention("cpu", precision)
        assert not any(b.attn.fused_attn for b in model.blocks)
        model.configure_attention("cuda", precision)
        assert all(b.attn.fused_attn for b in model.blocks)


def test_padding_mask_and_combine() -> None:
    valid = torch.tensor([[True, False, True], [False, False, False]])
    mask = padding_mask(valid, prefix=1)
    assert mask is not None and mask.shape == (2, 1, 1, 4)
    assert mask[0, 0, 0].tolist() == [True, True, False, True]
    assert mask[1].all()  # no valid token: attend to all (finite outputs)
    assert padding_mask(None) is None and combine(None, None) is None
    a = torch.tensor([[True, True], [False, True]])[None, None]
    b = torch.tensor([[True, False]])[None, None]  # broadcast over queries
    assert combine(a, None, b)[0, 0].tolist() == [[True, False], [True, True]]  # empty row → all


def test_window_mask_checks_the_axes() -> None:
    with pytest.raises(ValueError, match="axes"):
        window_mask(grid_coords(1, 4), (2,))


def test_mae_window_decoder_alternates_plain_and_shifted_windows() -> None:
    """AudioMAE's decoder (``mae.decoder_window``): local windows on the token grid, shifted every
    other block; windows that cover the whole grid even when shifted give exactly the global decoder."""
    import mpt
    from mpt.config import build_config
    from mpt.contract import Batch, as_masks
    from mpt.errors import ConfigError
    from mpt.trainer import build_model

    image = mpt.get_modality("image")
    base = ["model.dim=32", "model.depth=1", "model.heads=2", "mae.decoder_dim=32", "mae.decoder_depth=2",
            "mae.decoder_heads=2", "tokenizer.patch=8", "data.size=32"]
    batch = Batch.of(torch.rand(2, 3, 32, 32))
    outs = {}
    windows = (("global", []), ("whole", ["mae.decoder_window=[8,8]"]), ("local", ["mae.decoder_window=[2,2]"]))
    for name, extra in windows:
        torch.manual_seed(0)
        model, masker = build_model(build_config(image, "demo", None, base + extra), image)
        model.eval()
        tokens = model.backbone.tokens(batch)
        masks = as_masks(masker(tokens, torch.Generator().manual_seed(0)))
        if name == "local":
            kept, queried = tokens.select(masks[0].keep), tokens.select(masks[0].targets())
            plain, shifted = model.window_masks(kept, queried)
            assert not torch.equal(plain, shifted) and not plain.all()
        outs[name] = model(tokens, masks).pred
    torch.testing.assert_close(outs["whole"], outs["global"])
    assert not torch.allclose(outs["local"], outs["global"], atol=1e-4)
    with pytest.raises(ConfigError, match="mae.decoder_window"):
        build_model(build_config(image, "demo", None, base + ["mae.decoder_window=[2]"]), image)
