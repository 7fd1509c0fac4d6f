"""mpt.finetune: layer-wise LR decay groups, drop path, the fine-tuning loop, the classifier head."""

from __future__ import annotations

import math

import pytest
import torch
from timm.layers import DropPath
from torch import nn

import mpt
from mpt.backbone import Backbone, build_backbone
from mpt.config import ModelConfig
from mpt.finetune import Classifier, finetune, layer_decay_groups, set_drop_path

pytest.importorskip("mpt_timeseries")
from mpt_timeseries.config import TimeSeriesTokenizerConfig  # noqa: E402

T = 64  # time steps per series
CLASSES = ["slow", "medium", "fast"]


def tiny_encoder(seed: int = 0, cls_token: bool = False, pos: str = "sincos") -> Backbone:
    torch.manual_seed(seed)
    tok = TimeSeriesTokenizerConfig(patch=8, stride=8, pos=pos, max_len=T)  # type: ignore[arg-type]
    return build_backbone(mpt.get_modality("timeseries"), tok, ModelConfig(dim=32, depth=3, heads=2,
                                                                            cls_token=cls_token))


class Waves:
    """Labelled univariate series ``[1, T]``: sines of about 1, 3 or 8 cycles (random phase, ±20 %
    frequency, noise), in class order 0, 1, 2, 0, 1, 2, …"""

    classes = CLASSES

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        t = torch.linspace(0, 1, T)
        self.samples = []
        for i in range(n):
            label = i % 3
            phase, jitter = torch.rand(1, generator=g).item(), 0.8 + 0.4 * torch.rand(1, generator=g).item()
            x = torch.sin(2 * math.pi * (t * jitter * (1.0, 3.0, 8.0)[label] + phase))
            x = x + 0.1 * torch.randn(T, generator=g)
            self.samples.append(mpt.Sample(input=x[None].float(), source=f"wave{i}", label=label))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> mpt.Sample:
        return self.samples[i]


def test_layer_decay_groups_by_hand() -> None:
    model = Classifier(tiny_encoder(cls_token=True, pos="learned"), 3)
    groups = layer_decay_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)  # each exactly once

    names = {id(p): n for n, p in model.named_parameters()}
    scale_of = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {names[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}
    # depth 3, decay 0.5: tokenizer 0.5**4, block i 0.5**(3 - i), final norm and head 1
    assert scale_of["encoder.tokenizer.proj.weight"] == 0.0625
    assert scale_of["encoder.tokenizer.pos.table"] == 0.0625
    assert scale_of["encoder.encoder.cls_token"] == 0.0625
    for i, want in enumerate([0.125, 0.25, 0.5]):
        assert scale_of[f"encoder.encoder.blocks.{i}.attn.qkv.weight"] == want
        assert scale_of[f"encoder.encoder.blocks.{i}.norm1.weight"] == want
    assert scale_of["encoder.encoder.norm.weight"] == scale_of["head.weight"] == scale_of["head.bias"] == 1.0
    assert min(scale_of.values()) == 0.0625
    for g in groups:
        assert g["lr"] == g["lr_scale"]  # lr 1.0 × scale
    # no decay: biases, norms, the CLS token and the learned position table; decay: weight matrices
    for name in ["head.bias", "encoder.encoder.norm.weight", "encoder.encoder.blocks.0.attn.qkv.bias",
                 "encoder.encoder.cls_token", "encoder.tokenizer.pos.table", "encoder.tokenizer.proj.bias"]:
        assert decay_of[name] == 0.0, name
    for name in ["head.weight", "encoder.tokenizer.proj.weight", "encoder.encoder.blocks.2.mlp.fc1.weight"]:
        assert decay_of[name] == 0.05, name

    model.encoder.requires_grad_(False)  # frozen parameters are left out
    assert [g["name"] for g in layer_decay_groups(model, 1.0, 0.05, 0.5)] == ["layer4_decay", "layer4_no_decay"]


def test_set_drop_path_rates_and_modes() -> None:
    encoder = tiny_encoder()
    x = torch.randn(4, 2, T)
    encoder.eval()
    before = encoder(x).pooled
    set_drop_path(encoder, 0.5)
    rates = [[getattr(m, "drop_prob", 0.0) for m in (b.drop_path1, b.drop_path2)] for b in encoder.encoder.blocks]
    assert rates == [[0.0, 0.0], [0.25, 0.25], [0.5, 0.5]]
    assert isinstance(encoder.encoder.blocks[0].drop_path1, nn.Identity)
    assert isinstance(encoder.encoder.blocks[2].drop_path2, DropPath)
    torch.testing.assert_close(encoder(x).pooled, before)  # eval mode: no effect
    encoder.train()
    a, b = encoder(x).pooled, encoder(x).pooled
    assert not torch.allclose(a, b)  # train mode: blocks are dropped at random
    with pytest.raises(mpt.ConfigError, match="drop_path"):
        set_drop_path(encoder, 1.0)


def test_finetune_learns_is_deterministic_and_probe_freezes() -> None:
    train, test = Waves(240, seed=1), Waves(60, seed=2)
    encoder = tiny_encoder()
    original = {k: v.clone() for k, v in encoder.state_dict().items()}
    opts = dict(num_classes=3, epochs=15, batch_size=16, lr=5e-3, warmup_epochs=1, progress=False)
    first = finetune(encoder, train, test, **opts)
    accs = [h["accuracy"] for h in first.history]
    assert len(first.history) == 15 and first.best_accuracy == max(accs)
    assert accs[-1] >= 0.9 and first.history[-1]["balanced_accuracy"] >= 0.9, accs
    untrained = Classifier(tiny_encoder(), 3).eval()
    with torch.no_grad():
        chance = (untrained(torch.stack([s.input for s in test.samples])).argmax(-1) ==
                  torch.tensor([s.label for s in test.samples])).float().mean().item()
    assert chance <= 0.5  # three balanced classes: about 1/3 before training
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert first.classes == CLASSES
    for k, v in encoder.state_dict().items():  # the caller's encoder is not modified
        torch.testing.assert_close(v, original[k])

    again = finetune(encoder, train, test, **opts)
    assert again.history == first.history

    probe = finetune(encoder, train, test, **{**opts, "epochs": 2}, freeze_encoder=True)
    for k, v in probe.model.encoder.state_dict().items():
        torch.testing.assert_close(v, original[k])
    assert not any(p.requires_grad for p in probe.model.encoder.parameters())
    assert not torch.equal(probe.model.head.weight, first.model.head.weight)


def test_finetune_errors() -> None:
    encoder = tiny_encoder()
    with pytest.raises(mpt.MptError, match="no CLS token"):
        Classifier(encoder, 3, pool="cls")
    Classifier(tiny_encoder(cls_token=True), 3, pool="cls")  # fine with one
    with pytest.raises(mpt.ConfigError, match="num_classes.*training data has 3 classes"):
        finetune(encoder, Waves(12, seed=0), num_classes=4, progress=False)
    unlabelled = Waves(12, seed=0)
    for s in unlabelled.samples:
        s.label = None
    unlabelled.classes = []
    with pytest.raises(mpt.DataError, match="no class labels"):
        finetune(encoder, unlabelled, num_classes=3, progress=False)


def test_classifier_mean_pool_with_cls_token_ignores_padding() -> None:
    model = Classifier(tiny_encoder(cls_token=True), 3).eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(2, 1, T)
    padded = x.clone()
    padded[:, :, 48:] = float("nan")  # the last two patches missing: padding tokens
    logits = model(padded)
    assert torch.isfinite(logits).all()
    out = model.encoder(padded)
    torch.testing.assert_close(logits, model.head(out.tokens[:, :6].mean(1)))


def test_finetune_from_path_matches_classes_by_name(tmp_path) -> None:  # noqa: ANN001 - pytest tmp_path
    import numpy as np

    from mpt.config import build_config
    from mpt.finetune import finetune_from_path
    from mpt.pretrained import encoder_card, save_encoder

    modality = mpt.get_modality("timeseries")
    cfg = build_config(modality, sets=["data.context=64", "tokenizer.patch=8", "tokenizer.stride=8",
                                       "model.dim=32", "model.depth=2", "model.heads=2"])
    backbone = build_backbone(modality, cfg.tokenizer, cfg.model)
    save_encoder(backbone, encoder_card(cfg, backbone, {}), tmp_path / "encoder")

    def write(name: str, waves: Waves, keep: tuple[int, ...] = (0, 1, 2)) -> None:
        samples = [s for s in waves.samples if s.label in keep]
        x = np.stack([s.input.numpy() for s in samples])
        np.savez(tmp_path / "data" / name, X=x, y=np.array([CLASSES[s.label] for s in samples]))

    (tmp_path / "data").mkdir()
    write("waves_TRAIN.npz", Waves(48, seed=1))
    write("waves_TEST.npz", Waves(30, seed=2), keep=(0, 2))  # no "medium" in the test file
    result = finetune_from_path(tmp_path / "encoder", tmp_path / "data", tmp_path / "data", epochs=1,
                                batch_size=16, progress=False)
    assert result.classes == ["fast", "medium", "slow"]  # sorted names; the test file's 2 classes map onto them
    assert 0 <= result.history[0]["accuracy"] <= 1

    from mpt.features import open_dataset
    from mpt.finetune import Relabelled
    from mpt.pretrained import read_card

    test, _ = open_dataset(read_card(tmp_path / "encoder"), tmp_path / "data", "test")
    assert test.classes == ["fast", "slow"]
    relabelled = Relabelled(test, test.classes, result.classes)
    assert {relabelled[i].label for i in range(len(test))} == {0, 2}

    ramps = np.zeros((3, 1, 64)) + np.arange(64)
    np.savez(tmp_path / "data" / "waves_TEST.npz", X=ramps, y=np.array(["a", "b", "c"]))
    with pytest.raises(mpt.DataError, match=r"evaluation classes \['a', 'b', 'c'\] are not among"):
        finetune_from_path(tmp_path / "encoder", tmp_path / "data", tmp_path / "data", epochs=1, progress=False)
    np.savez(tmp_path / "data" / "waves_TRAIN.npz", X=ramps)
    with pytest.raises(mpt.DataError, match="no class labels"):
        finetune_from_path(tmp_path / "encoder", tmp_path / "data", None, epochs=1, progress=False)


def test_finetune_augments_training_batches_only_and_deterministically() -> None:
    """``augment(batch, generator)`` (the modality's ``Modality.augment``) runs on every training batch,
    never on evaluation batches, drawn from the step's seed: the same seed gives the same run."""
    train, test = Waves(48, seed=1), Waves(12, seed=2)
    calls: list[int] = []

    def jitter(batch: mpt.Batch, generator: torch.Generator) -> mpt.Batch:
        assert isinstance(batch, mpt.Batch) and isinstance(generator, torch.Generator)
        calls.append(batch.batch_size)
        noise = torch.randn(batch.tensor.shape, generator=generator)
        return batch.replace(input=batch.tensor + 0.5 * noise)

    opts = dict(num_classes=3, epochs=2, batch_size=16, lr=5e-3, warmup_epochs=0, progress=False)
    augmented = finetune(tiny_encoder(), train, test, **opts, augment=jitter)
    assert len(calls) == 2 * (48 // 16)  # one call per training step; none for the 2 × 12 eval samples
    assert set(calls) == {16}
    again = finetune(tiny_encoder(), train, test, **opts, augment=jitter)
    assert again.history == augmented.history  # the augmentation is drawn from the step's seed
    plain = finetune(tiny_encoder(), train, test, **opts)
    assert [h["train_loss"] for h in plain.history] != [h["train_loss"] for h in augmented.history]
    assert augmented.model.augment is None  # the returned classifier does not augment
    n = len(calls)
    with torch.no_grad():
        augmented.model.train()(torch.stack([s.input for s in test.samples]))
    assert len(calls) == n
