"""Forecasting and classification heads on a time-series encoder (PatchTST, Nie et al. ICLR 2023)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import mpt
from mpt.backbone import Backbone, build_backbone
from mpt.config import ModelConfig, build_config
from mpt.pretrained import encoder_card, save_encoder
from mpt_timeseries.config import TimeSeriesTokenizerConfig
from mpt_timeseries.heads import Classifier, Forecaster, masked_mse
from mpt_timeseries.modality import TimeSeries

CONTEXT, HORIZON = 64, 16


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train on one thread: same result however many cores, and no oversubscription on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def encoder(seed: int = 0, **tokenizer: object) -> Backbone:
    torch.manual_seed(seed)
    cfg = TimeSeriesTokenizerConfig(patch=8, stride=8, **tokenizer)  # type: ignore[arg-type]
    return build_backbone(TimeSeries(), cfg, ModelConfig(dim=32, depth=1, heads=2))


def waves(n: int, length: int, gen: torch.Generator, square: bool = False) -> torch.Tensor:
    """``[n, 1, length]`` noisy sine (or square) waves: random period, phase, amplitude and offset."""
    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, generator=gen)

    t = torch.arange(length, dtype=torch.float32)
    wave = torch.sin(2 * math.pi * t / u(12, 24) + u(0, 2 * math.pi))
    if square:
        wave = torch.sign(wave)
    amp = u(0.5, 3.0)
    return amp * wave + u(-5, 5) + 0.1 * amp * torch.randn(n, 1, length, generator=gen)


def test_forecast_shapes_any_channel_count_and_mixed() -> None:
    model = Forecaster(encoder(), CONTEXT, HORIZON)
    for c in (1, 5):
        assert model(torch.randn(3, c, CONTEXT)).shape == (3, c, HORIZON)
    x = torch.randn(2, 3, CONTEXT)
    x[0, 1, :20] = float("nan")  # missing values in the window still give a finite forecast
    assert torch.isfinite(model(x)).all()
    mixed = Forecaster(encoder(channels="mixed", num_channels=3), CONTEXT, HORIZON)
    assert mixed.head.out_features == 3 * HORIZON
    assert mixed(torch.randn(4, 3, CONTEXT)).shape == (4, 3, HORIZON)
    odd = Forecaster(encoder(), 60, 7)  # context not a multiple of the patch: last patch padded
    assert odd.num_patches == 8 and odd(torch.randn(2, 2, 60)).shape == (2, 2, 7)


def test_heads_take_collated_batches() -> None:
    """A Batch from the modality's collate works as the plain tensor does."""
    enc = encoder().eval()
    ds = TimeSeries().dataset(None, "train", TimeSeries.data_config(context=CONTEXT, min_length=8))
    batch = TimeSeries().collate([ds[0], ds[1], ds[2]])
    with torch.no_grad():
        forecaster, classifier = Forecaster(enc, CONTEXT, HORIZON).eval(), Classifier(enc, 4).eval()
        torch.testing.assert_close(forecaster(batch), forecaster(batch.tensor), rtol=0, atol=0)
        torch.testing.assert_close(classifier(batch), classifier(batch.tensor), rtol=0, atol=0)
    assert forecaster(batch).shape == (3, 6, HORIZON)


@pytest.mark.parametrize("channels", ["independent", "mixed"])
def test_forecast_follows_scale_and_shift_of_input(channels: str) -> None:
    """Inverse RevIN: forecast(a·x + b) = a·forecast(x) + b per sample and channel (a > 0)."""
    model = Forecaster(encoder(channels=channels, num_channels=2, revin_eps=1e-12), CONTEXT, HORIZON).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, CONTEXT, generator=gen)
    a = 0.2 + 5 * torch.rand(4, 2, 1, generator=gen)
    b = 20 * torch.rand(4, 2, 1, generator=gen) - 10
    with torch.no_grad():
        y, y2 = model(x), model(a * x + b)
    assert not torch.allclose(y2, y, atol=0.1)
    torch.testing.assert_close(y2, a * y + b, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("one_thread")
def test_fine_tuned_forecaster_beats_naive_forecast() -> None:
    gen = torch.Generator().manual_seed(0)
    train = waves(1024, CONTEXT + HORIZON, gen)
    test = waves(256, CONTEXT + HORIZON, gen)
    model = Forecaster(encoder(), CONTEXT, HORIZON)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        batch = train[torch.randint(len(train), (64,), generator=gen)]
        loss = masked_mse(model(batch[..., :CONTEXT]), batch[..., CONTEXT:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = test[..., :CONTEXT], test[..., CONTEXT:]
    with torch.no_grad():
        mse = masked_mse(model(x), y).item()
    naive = masked_mse(x[..., -1:].expand_as(y), y).item()
    print(f"forecast MSE {mse:.4f}, naive (last value) MSE {naive:.4f}")
    assert mse < 0.5 * naive


@pytest.mark.usefixtures("one_thread")
def test_classifier_separates_sine_from_square_waves() -> None:
    gen = torch.Generator().manual_seed(0)

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([waves(n, CONTEXT, gen), waves(n, CONTEXT, gen, square=True)])
        return x, torch.cat([torch.zeros(n), torch.ones(n)]).long()

    x_train, y_train = data(512)
    x_test, y_test = data(128)
    model = Classifier(encoder(), 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        idx = torch.randint(len(x_train), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x_test)
    assert logits.shape == (256, 2)
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    print(f"classifier held-out accuracy {accuracy:.3f}")
    assert accuracy >= 0.9


@pytest.mark.parametrize("head", ["forecaster", "classifier"])
def test_frozen_encoder_stays_fixed_while_head_trains(head: str) -> None:
    enc = encoder()
    model = Forecaster(enc, CONTEXT, HORIZON, freeze_encoder=True) if head == "forecaster" \
        else Classifier(enc, 3, freeze_encoder=True)
    model.train()
    assert not enc.training and model.head.training
    assert not any(p.requires_grad for p in enc.parameters())
    before_enc = {k: v.clone() for k, v in enc.state_dict().items()}
    before_head = {k: v.clone() for k, v in model.head.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(8, 2, CONTEXT)
    out = model(x)
    loss = out.pow(2).mean() if head == "forecaster" else out.logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert all(torch.equal(before_enc[k], v) for k, v in enc.state_dict().items())
    assert any(not torch.equal(before_head[k], v) for k, v in model.head.state_dict().items())


def test_fine_tuning_updates_encoder() -> None:
    enc = encoder()
    model = Forecaster(enc, CONTEXT, HORIZON)
    before = enc.tokenizer.proj.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    masked_mse(model(torch.randn(8, 2, CONTEXT)), torch.randn(8, 2, HORIZON)).backward()
    opt.step()
    assert not torch.equal(before, enc.tokenizer.proj.weight)


def test_masked_mse_ignores_missing_targets() -> None:
    target = torch.tensor([[1.0, float("nan"), 3.0], [float("nan"), 5.0, float("nan")]])
    pred = torch.tensor([[2.0, 0.0, 3.0], [0.0, 3.0, 0.0]], requires_grad=True)
    loss = masked_mse(pred, target)
    assert loss.item() == pytest.approx((1 + 0 + 4) / 3)
    other = pred.detach().clone()
    other[target.isnan()] = torch.tensor([100.0, -7.0, float("nan")])
    assert masked_mse(other, target).item() == pytest.approx(loss.item())
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[target.isnan()] == 0).all()
    empty = masked_mse(pred, torch.full_like(target, float("nan")))
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="shape"):
        masked_mse(pred, target[:, :2])


def test_wrong_context_length_is_a_clear_error() -> None:
    model = Forecaster(encoder(), CONTEXT, HORIZON)
    with pytest.raises(ValueError, match=r"\[B, C, 64\]"):
        model(torch.randn(2, 1, 50))
    with pytest.raises(ValueError, match=r"\[B, C, 64\]"):
        model(torch.randn(2, CONTEXT))


def test_round_trip_through_saved_encoder(tmp_path: Path) -> None:
    sets = ["tokenizer.patch=8", "tokenizer.stride=8", "model.dim=32", "model.depth=1", "model.heads=2"]
    cfg = build_config(TimeSeries(), "demo", sets=sets)
    torch.manual_seed(0)
    backbone = build_backbone(TimeSeries(), cfg.tokenizer, cfg.model)
    path = save_encoder(backbone, encoder_card(cfg, backbone, {"data": "test"}), tmp_path / "enc")
    try:
        loaded = mpt.load_encoder(path)
    except mpt.PluginError as exc:
        pytest.skip(f"the timeseries entry point is not installed in this environment: {exc}")
    original = Forecaster(backbone, CONTEXT, HORIZON).eval()
    restored = Forecaster(loaded, CONTEXT, HORIZON).eval()
    restored.head.load_state_dict(original.head.state_dict())
    x = 3 * torch.randn(4, 3, CONTEXT) + 1
    with torch.no_grad():
        torch.testing.assert_close(restored(x), original(x), rtol=0, atol=0)
