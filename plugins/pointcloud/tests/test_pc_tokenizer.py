"""Point tokenizer, Chamfer target and figure."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mpt.contract import Batch, Figure, Mask, weighted_mean
from mpt.errors import ConfigError
from mpt_pointcloud import PointCloud, PointCloudTokenizerConfig
from mpt_pointcloud.ops import chamfer_l2
from mpt_pointcloud.targets import ChamferTarget
from mpt_pointcloud.tokenizer import PointTokenizer


def make(groups: int = 8, size: int = 16, features: int = 0, dim: int = 32) -> PointTokenizer:
    torch.manual_seed(0)
    cfg = PointCloudTokenizerConfig(num_groups=groups, group_size=size, hidden=16, features=features)
    return PointCloud().tokenizer(cfg, dim)


def test_tokenize_shapes_and_relative_coordinates() -> None:
    tok = make()
    x = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(0))
    ts = tok.tokenize(Batch.of(x))
    assert ts.patches.shape == (3, 8, 16, 3) and ts.coords.shape == (3, 8, 3) and ts.grid is None
    assert tok.patch_shape == ts.patch_shape == (16, 3) and type(tok).grid_axes == 0  # declared, not measured
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
    ts = tok.tokenize(Batch.of(x))  # P=5 < group_size=16
    assert ts.patches.shape == (2, 4, 16, 5) and tok.patch_shape == (16, 5)
    assert set(ts.patches[0, 0, :, 3].tolist()) <= set(x[0, :, 3].tolist())  # features unchanged
    assert torch.equal(tok.tokenize(Batch.of(x)).patches, ts.patches)  # deterministic
    with pytest.raises(ConfigError, match="features"):
        tok.tokenize(Batch.of(torch.rand(2, 50, 3)))  # needs 5 channels
    with pytest.raises(ConfigError, match="features"):
        tok.normalize(Batch.of(torch.rand(2, 50, 3)))


def test_embed_shape_and_permutation_invariance() -> None:
    tok = make().eval()
    ts = tok.tokenize(Batch.of(torch.rand(2, 300, 3)))
    out = tok.embed(ts)
    assert out.shape == (2, 8, 32)
    perm = dataclasses.replace(ts, patches=ts.patches[:, :, torch.randperm(16)])
    assert torch.allclose(tok.embed(perm), out, atol=1e-5)
    assert not torch.allclose(out[:, 0], out[:, 1])  # different groups, different tokens
    card = tok.card()
    assert {k: card[k] for k in ("num_groups", "group_size", "hidden", "in_channels")} == {
        "num_groups": 8, "group_size": 16, "hidden": 16, "in_channels": 3}
    assert "unit sphere" in card["input_normalization"]
    tok.train()
    tok.embed(ts).sum().backward()
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


def test_chamfer_target_is_a_weighted_mean_of_per_group_chamfer() -> None:
    target = ChamferTarget()
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(2, 4, 8, 3, generator=g)
    pred = torch.rand(2, 4, 24, generator=g)
    per_group = torch.stack([torch.stack([chamfer_l2(pred[b, n].reshape(1, 8, 3), patches[b, n][None])
                                          for n in range(4)]) for b in range(2)])  # [2, 4]
    # no weight: Point-MAE's cdl2 over every group
    assert target.loss(pred, patches).item() == pytest.approx(chamfer_l2(pred.reshape(-1, 8, 3),
                                                                         patches.reshape(-1, 8, 3)).item(), rel=1e-6)
    assert target.loss(pred, patches).item() == pytest.approx(per_group.mean().item(), rel=1e-6)
    weight = torch.tensor([[1.0, 0.0, 0.5, 1.0], [0.0, 0.0, 2.0, 1.0]])
    assert target.loss(pred, patches, weight).item() == pytest.approx(weighted_mean(per_group, weight).item(),
                                                                      rel=1e-6)
    # a group of weight 0 (padding) never counts, however wrong its prediction
    wrong = pred.clone()
    wrong[0, 1] += 100
    assert target.loss(wrong, patches, weight).item() == pytest.approx(target.loss(pred, patches, weight).item(),
                                                                       rel=1e-6)
    exact = patches.reshape(2, 4, 24).clone()
    exact[1, 0] += 1.0  # wrong only where the weight is 0
    assert target.loss(exact, patches, weight).item() == 0.0


@pytest.mark.parametrize("mae", [True, False])
def test_figure_writes_a_png(tmp_path, mae: bool) -> None:  # noqa: ANN001
    tok = make()
    batch = Batch.of(torch.rand(2, 256, 3) * 50 + 7)  # raw, as collated: the figure normalises it
    ts = tok.tokenize(tok.normalize(batch))
    mask = Mask(keep=torch.arange(3).repeat(2, 1), pred=torch.arange(3, 8).repeat(2, 1))
    rec = ts.patches[:, 3:] * 0.9 if mae else None
    path = tmp_path / "fig.png"
    PointCloud().visualize(Figure(batch, ts, mask, rec, title="step 1", tokenizer=tok), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    if mae:  # decoder masking: the reconstruction covers mask.targets() = pred ∩ decode only
        decoded = Mask(keep=mask.keep, pred=mask.pred, decode=torch.tensor([[0, 4, 6]] * 2))
        assert decoded.targets().tolist() == [[4, 6]] * 2
        PointCloud().visualize(Figure(batch, ts, decoded, ts.patches[:, [4, 6]], tokenizer=tok), path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_normalize_is_point_mae_pc_norm_and_idempotent() -> None:
    tok = make(features=1)
    x = torch.rand(3, 200, 4) * torch.tensor([5.0, 2.0, 9.0, 1.0]) + torch.tensor([100.0, -20.0, 3.0, 0.0])
    batch = Batch(input=x, sources=["a", "b", "c"], labels=torch.tensor([0, 1, 2]))
    out = tok.normalize(batch)
    assert isinstance(out, Batch) and out.sources == batch.sources and torch.equal(out.labels, batch.labels)
    y = out.tensor
    assert torch.allclose(y[..., :3].mean(1), torch.zeros(3, 3), atol=1e-4)  # centred
    assert torch.allclose(y[..., :3].norm(dim=-1).amax(1), torch.ones(3))  # unit sphere
    assert torch.equal(y[..., 3], x[..., 3])  # features untouched
    assert torch.equal(batch.tensor, x)  # the input batch is not changed in place
    assert torch.allclose(tok.normalize(out).tensor, y, atol=1e-5)  # idempotent
    # the same cloud in other units and at another place gives the same normalised cloud
    moved = x * torch.tensor([7.0, 7, 7, 1]) + torch.tensor([1e3, 1e3, 1e3, 0])
    assert torch.allclose(tok.normalize(Batch.of(moved)).tensor, y, atol=1e-3)


def test_padded_clouds_are_normalised_by_their_real_points() -> None:
    """Clouds of different sizes collated by the core's default collate (zero padding, meta["length"])
    give the tokens of each cloud alone: padding neither moves the centroid nor becomes a group."""
    from mpt.contract import Sample, collate_samples

    tok = make(groups=4, size=8)
    g = torch.Generator().manual_seed(3)
    small, big = torch.rand(40, 3, generator=g) * 4 + 10, torch.rand(100, 3, generator=g) * 2 - 5
    batch = collate_samples([Sample(small), Sample(big)])
    assert batch.tensor.shape == (2, 100, 3) and batch.meta["length"].tolist() == [40, 100]
    padded = tok.tokenize(tok.normalize(batch))
    alone = tok.tokenize(tok.normalize(Batch.of(small[None])))
    torch.testing.assert_close(padded.coords[0], alone.coords[0])
    torch.testing.assert_close(padded.patches[0], alone.patches[0])
    normalised = tok.normalize(batch).tensor[0]
    assert torch.allclose(normalised[:40].mean(0), torch.zeros(3), atol=1e-5)
    assert set(map(tuple, normalised[40:].tolist())) <= set(map(tuple, normalised[:40].tolist()))
