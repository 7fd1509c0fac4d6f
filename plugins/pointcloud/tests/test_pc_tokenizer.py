"""Point tokenizer, Chamfer target and figure."""

from __future__ import annotations

import pytest
import torch

from mpt.contract import Figure, Mask
from mpt.errors import ConfigError
from mpt_pointcloud import PointCloud, PointCloudTokenizerConfig
from mpt_pointcloud.targets import ChamferTarget
from mpt_pointcloud.tokenizer import PointTokenizer


def make(groups: int = 8, size: int = 16, features: int = 0, dim: int = 32) -> PointTokenizer:
    torch.manual_seed(0)
    cfg = PointCloudTokenizerConfig(num_groups=groups, group_size=size, hidden=16, features=features)
    return PointCloud().tokenizer(cfg, dim)


def test_tokenize_shapes_and_relative_coordinates() -> None:
    tok = make()
    x = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(0))
    ts = tok.tokenize(x)
    assert ts.patches.shape == (3, 8, 16, 3) and ts.coords.shape == (3, 8, 3) and ts.grid is None
    assert not ts.patches.requires_grad
    absolute = ts.patches + ts.coords[:, :, None]
    for b in range(3):
        d = torch.cdist(ts.coords[b], x[b], compute_mode="donot_use_mm_for_euclid_dist")  # [G, P]
        assert torch.allclose(d.min(1).values, torch.zeros(8), atol=1e-6)  # centres are input points
        radius = ts.patches[b].norm(dim=-1).max(-1).values  # group radius around its centre
        assert torch.allclose(radius, d.sort(1).values[:, 15], atol=1e-5)  # = distance of the K-th NN
        assert (absolute[b].reshape(-1, 1, 3) - x[b]).norm(dim=-1).min(1).values.max() < 1e-5
    assert ts.patches.norm(dim=-1).max() < 0.6  # local: far smaller than the unit cube's diagonal


def test_tokenize_keeps_features_and_handles_few_points() -> None:
    tok = make(groups=4, size=16, features=2)
    x = torch.rand(2, 5, 5)
    ts = tok.tokenize(x)  # P=5 < group_size=16
    assert ts.patches.shape == (2, 4, 16, 5)
    assert set(ts.patches[0, 0, :, 3].tolist()) <= set(x[0, :, 3].tolist())  # features unchanged
    assert torch.equal(tok.tokenize(x).patches, ts.patches)  # deterministic
    with pytest.raises(ConfigError, match="features"):
        tok.tokenize(torch.rand(2, 50, 3))  # needs 5 channels


def test_embed_shape_and_permutation_invariance() -> None:
    tok = make().eval()
    ts = tok.tokenize(torch.rand(2, 300, 3))
    out = tok.embed(ts.patches)
    assert out.shape == (2, 8, 32)
    perm = ts.patches[:, :, torch.randperm(16)]
    assert torch.allclose(tok.embed(perm), out, atol=1e-5)
    assert not torch.allclose(out[:, 0], out[:, 1])  # different groups, different tokens
    card = tok.card()
    assert {k: card[k] for k in ("num_groups", "group_size", "hidden", "in_channels")} == {
        "num_groups": 8, "group_size": 16, "hidden": 16, "in_channels": 3}
    assert "unit sphere" in card["input_normalization"]
    tok.train()
    tok.embed(ts.patches).sum().backward()
    assert tok.first[0].weight.grad is not None


def test_chamfer_target() -> None:
    target = ChamferTarget()
    patches = torch.rand(2, 5, 16, 4)
    assert target.pred_dim(patches.shape[2:]) == 48
    exact = patches[..., :3].reshape(2, 5, 48)
    assert target.loss(exact, patches).item() == 0.0
    assert target.loss(exact + 0.05, patches).item() > 0
    assert torch.equal(target.reconstruct(exact, patches), patches[..., :3])
    assert set(PointCloud().targets()) == {"chamfer"}


@pytest.mark.parametrize("mae", [True, False])
def test_figure_writes_a_png(tmp_path, mae: bool) -> None:  # noqa: ANN001
    tok = make()
    batch = torch.rand(2, 256, 3)
    ts = tok.tokenize(batch)
    mask = Mask(keep=torch.arange(3).repeat(2, 1), pred=torch.arange(3, 8).repeat(2, 1))
    rec = ts.patches[:, 3:] * 0.9 if mae else None
    path = tmp_path / "fig.png"
    PointCloud().visualize(Figure(batch, ts, mask, rec, title="step 1"), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_normalize_is_point_mae_pc_norm_and_idempotent() -> None:
    tok = make(features=1)
    x = torch.rand(3, 200, 4) * torch.tensor([5.0, 2.0, 9.0, 1.0]) + torch.tensor([100.0, -20.0, 3.0, 0.0])
    y = tok.normalize(x)
    assert torch.allclose(y[..., :3].mean(1), torch.zeros(3, 3), atol=1e-4)  # centred
    assert torch.allclose(y[..., :3].norm(dim=-1).amax(1), torch.ones(3))  # unit sphere
    assert torch.equal(y[..., 3], x[..., 3])  # features untouched
    assert torch.allclose(tok.normalize(y), y, atol=1e-5)  # training data is already normalised
    # the same cloud in other units and at another place gives the same normalised cloud
    moved = x * torch.tensor([7.0, 7, 7, 1]) + torch.tensor([1e3, 1e3, 1e3, 0])
    assert torch.allclose(tok.normalize(moved), y, atol=1e-3)
