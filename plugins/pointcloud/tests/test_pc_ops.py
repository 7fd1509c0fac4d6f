"""FPS, KNN and Chamfer against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpt_pointcloud.ops import (
    chamfer_l2,
    chamfer_l2_per_set,
    farthest_point_sample,
    fill_padding,
    knn,
    normalize_clouds,
)


def fps_reference(x: np.ndarray, n: int) -> list[int]:
    chosen, dist = [0], np.full(len(x), np.inf)
    for _ in range(n - 1):
        dist = np.minimum(dist, ((x - x[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(dist.argmax()))
    return chosen


@pytest.mark.parametrize(("b", "p", "n"), [(1, 10, 1), (2, 50, 7), (3, 300, 32), (4, 1024, 64)])
def test_fps_matches_brute_force(b: int, p: int, n: int) -> None:
    x = torch.from_numpy(np.random.default_rng(p).normal(size=(b, p, 3)))  # float64: no near-ties
    got = farthest_point_sample(x, n)
    assert got.shape == (b, n) and got.dtype == torch.long
    for i in range(b):
        assert got[i].tolist() == fps_reference(x[i].numpy(), n)


def test_fps_each_sample_is_farthest_from_the_previous_ones() -> None:
    x = torch.rand(2, 200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    idx = farthest_point_sample(x, 20)
    for b in range(2):
        assert idx[b, 0] == 0 and len(set(idx[b].tolist())) == 20
        for i in range(1, 20):
            mind = torch.cdist(x[b], x[b, idx[b, :i]]).min(1).values  # distance to chosen set
            assert mind[idx[b, i]] == mind.max()


@pytest.mark.parametrize(("m", "p", "k"), [(1, 5, 5), (8, 100, 4), (16, 500, 32)])
def test_knn_matches_full_sort(m: int, p: int, k: int) -> None:
    g = torch.Generator().manual_seed(m + p)
    q, pts = torch.rand(2, m, 3, generator=g), torch.rand(2, p, 3, generator=g)
    got = knn(q, pts, k)
    assert got.shape == (2, m, k)
    ref = torch.cdist(q, pts).argsort(-1)[..., :k]
    brute = np.argsort(((q[:, :, None].double() - pts[:, None].double()) ** 2).sum(-1).numpy(), -1)[..., :k]
    for b in range(2):
        for j in range(m):
            assert set(got[b, j].tolist()) == set(ref[b, j].tolist()) == set(brute[b, j].tolist())
    d = torch.gather(torch.cdist(q, pts), 2, got)
    assert (d[..., 1:] >= d[..., :-1]).all()  # nearest first


def chamfer_reference(a: np.ndarray, b: np.ndarray) -> float:
    d1, d2 = [], []
    for s in range(len(a)):
        for p in a[s]:
            d1.append(min(((p - q) ** 2).sum() for q in b[s]))
        for q in b[s]:
            d2.append(min(((p - q) ** 2).sum() for p in a[s]))
    return float(np.mean(d1) + np.mean(d2))


def test_chamfer_matches_double_loop_and_is_symmetric() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5, 3)), rng.normal(size=(3, 7, 3))
    got = chamfer_l2(torch.from_numpy(a), torch.from_numpy(b))
    assert got.ndim == 0
    assert got.item() == pytest.approx(chamfer_reference(a, b), rel=1e-10)
    assert chamfer_l2(torch.from_numpy(b), torch.from_numpy(a)).item() == pytest.approx(got.item(), rel=1e-12)


def test_chamfer_per_set_matches_the_reference_of_each_set() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 9, 3))
    per = chamfer_l2_per_set(torch.from_numpy(a), torch.from_numpy(b))
    assert per.shape == (4,)
    for s in range(4):
        assert per[s].item() == pytest.approx(chamfer_reference(a[s : s + 1], b[s : s + 1]), rel=1e-10)
    assert chamfer_l2(torch.from_numpy(a), torch.from_numpy(b)).item() == pytest.approx(per.mean().item(), rel=1e-12)


def test_knn_puts_padding_last_and_normalisation_skips_it() -> None:
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(2, 30, 3, generator=g)
    real = torch.arange(30)[None] < torch.tensor([[20], [30]])
    q = pts[:, :4]
    got = knn(q, pts, 25, real)
    assert (got[0, :, :20] < 20).all() and (got[0, :, 20:] >= 20).all()  # the 20 real points first
    assert torch.equal(got[1], knn(q, pts, 25)[1])  # no padding: plain KNN
    length = torch.tensor([20, 30])
    filled = fill_padding(pts, length)
    assert torch.equal(filled[0, 20:], pts[0, :10]) and torch.equal(filled[1], pts[1])
    torch.testing.assert_close(normalize_clouds(pts, length)[0, :20], normalize_clouds(pts[:1, :20])[0])
    torch.testing.assert_close(normalize_clouds(pts, length)[1], normalize_clouds(pts[1:])[0])


def test_chamfer_zero_for_the_same_set_in_any_order() -> None:
    a = torch.rand(4, 32, 3)
    assert chamfer_l2(a, a[:, torch.randperm(32)]).item() == 0.0
    assert chamfer_l2(a, a + 0.1).item() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ops_agree_on_cuda() -> None:
    x = torch.rand(3, 2048, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(farthest_point_sample(x.cuda(), 64).cpu(), farthest_point_sample(x, 64))
    q = x[:, :64]
    got, ref = knn(q.cuda(), x.cuda(), 32).cpu().sort(-1).values, knn(q, x, 32).sort(-1).values
    assert torch.equal(got, ref)
    a, b = x[:, :32], x[:, 32:64]
    assert chamfer_l2(a.cuda(), b.cuda()).item() == pytest.approx(chamfer_l2(a, b).item(), rel=1e-9)
