"""A synthetic third-party plugin that exercises Contract 2: a modality whose tokens come in three
groups with different patch sizes and their own projections, per-sample metadata, variable
lengths, an optional streaming dataset, and a masker and an objective registered by entry point.

Input: ``[L, 3]`` float (three "bands" over L steps, L varies) with ``meta["gain"]``; the tokenizer
multiplies by the gain (so the metadata must reach it), then cuts band g into patches of
``PATCH[g]`` steps. Tokens: ``patches [B, N, 8]`` (NaN-padded to the largest patch), ``groups``
(band id), ``coords`` (patch start time, band id), ``valid`` (inside the sample's length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, IterableDataset

from mpt.config import bounded
from mpt.contract import PLUGIN_API, Batch, Figure, Mask, Modality, Recipe, Sample, Tokenizer, TokenSet
from mpt.errors import DataError
from mpt.files import LazyFiles, find_files
from mpt.objectives import Objective, ObjectiveOutput, one_mask
from mpt.registry import Registered

PATCH = (4, 8, 2)  # steps per patch of band 0, 1, 2
RECIPE = Path(__file__).with_name("synth_demo.yaml")
SEEN_META: list[list[float]] = []  # gains the tokenizer saw (to prove metadata reached it)


@dataclass
class SynthData:
    length: int = bounded(64, ge=8)  # longest series (multiple of 8)
    short: int = bounded(24, ge=8)  # every third sample has this length
    samples: int = bounded(48, ge=2)
    stream: bool = False  # an iterable dataset instead of a map-style one


@dataclass
class SynthTokenizerConfig:
    record_meta: bool = False
    mean: list[float] | None = None  # per-band mean, fitted on the training data when unset (Modality.fit)
    std: list[float] | None = None


def make_series(index: int, length: int) -> Tensor:
    t = torch.arange(length, dtype=torch.float32)
    phase = (index * 0.37) % (2 * math.pi)
    return torch.stack([torch.sin(t / 3 + phase), torch.cos(t / 5 + phase), torch.sin(t / 2 - phase)], -1)


def make_sample(index: int, cfg: SynthData) -> Sample:
    length = cfg.short if index % 3 == 2 else cfg.length
    gain = 1.0 + (index % 4)
    return Sample(input=make_series(index, length) / gain, source=f"synth#{index}", label=index % 2,
                  meta={"gain": gain})


class SynthDataset(Dataset):
    def __init__(self, cfg: SynthData) -> None:
        self.cfg = cfg

    def __len__(self) -> int:
        return self.cfg.samples

    def __getitem__(self, index: int) -> Sample:
        return make_sample(index, self.cfg)


class SynthStream(IterableDataset):
    def __init__(self, cfg: SynthData) -> None:
        self.cfg = cfg

    def __iter__(self):  # noqa: ANN204
        return (make_sample(i, self.cfg) for i in range(self.cfg.samples))


class NpyFolder(Dataset):
    """``.npy`` files of ``[L, 3]``: the header is checked at construction, data read on access."""

    def __init__(self, path: Path, skip_bad_files: bool) -> None:
        self.files = LazyFiles(path, find_files(path, (".npy",)), self.read, check=self.check,
                               skip_bad_files=skip_bad_files, cache=2, progress=False)
        self.skipped = self.files.skipped

    @staticmethod
    def check(f: Path) -> tuple[int, ...]:
        try:
            shape = np.load(f, mmap_mode="r").shape
        except (OSError, ValueError) as exc:
            raise DataError(f, f"not a readable .npy file ({exc})") from None
        if len(shape) != 2 or shape[1] != 3:
            raise DataError(f, f"expected [L, 3], got {shape}")
        return shape

    @staticmethod
    def read(f: Path) -> Tensor:
        return torch.from_numpy(np.load(f)[:64].astype(np.float32))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        return Sample(input=self.files[index], source=str(self.files.files[index]), meta={"gain": 1.0})


class SynthTokenizer(Tokenizer):
    coord_dim = 2
    pos_kind = "mlp"
    grid_axes = 0

    def __init__(self, config: SynthTokenizerConfig, dim: int) -> None:
        self.patch_shape = (max(PATCH),)
        super().__init__(dim)
        self.config = config
        self.proj = nn.ModuleList(nn.Linear(p, dim) for p in PATCH)  # one projection per group

    def normalize(self, batch: Batch) -> Batch:
        if self.config.record_meta:
            SEEN_META.append(batch.meta["gain"].tolist())
        gain = batch.meta.get("gain", torch.ones(batch.batch_size))  # a plain tensor (load_encoder) has gain 1
        x = batch.tensor * gain.to(batch.tensor.dtype)[:, None, None]
        if self.config.mean is not None and self.config.std is not None:
            x = (x - torch.tensor(self.config.mean)) / torch.tensor(self.config.std)
        return batch.replace(input=x)

    def tokenize(self, batch: Batch) -> TokenSet:
        x = batch.tensor  # [B, L, 3]
        b, length = x.shape[:2]
        lengths = batch.meta.get("length", torch.full((b,), length))
        patches, coords, groups, valid = [], [], [], []
        for g, p in enumerate(PATCH):
            n = length // p
            cut = x[:, : n * p, g].reshape(b, n, p)
            patches.append(nn.functional.pad(cut, (0, max(PATCH) - p), value=float("nan")))
            start = torch.arange(n, dtype=torch.float32) * p
            coords.append(torch.stack([start.expand(b, n), torch.full((b, n), float(g))], -1))
            groups.append(torch.full((b, n), g, dtype=torch.long))
            valid.append((start[None, :] + p) <= lengths[:, None].float())
        v = torch.cat(valid, 1)
        return TokenSet(patches=torch.cat(patches, 1), coords=torch.cat(coords, 1), groups=torch.cat(groups, 1),
                        valid=None if bool(v.all()) else v)

    def embed(self, tokens: TokenSet) -> Tensor:
        out = tokens.patches.new_zeros(*tokens.patches.shape[:2], self.dim)
        for g, p in enumerate(PATCH):
            sel = tokens.groups == g
            out[sel] = self.proj[g](tokens.patches[sel][:, :p].nan_to_num(0.0))
        return out

    def card(self) -> dict[str, Any]:
        return {"patches": list(PATCH)}


class Synth(Modality):
    name = "synth"
    description = "synthetic three-band series (Contract 2 tests)"
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = SynthData
    tokenizer_config = SynthTokenizerConfig
    extensions = (".npy",)

    def recipes(self) -> dict[str, Recipe]:
        return {"demo": Recipe("demo", RECIPE, "tiny synthetic run")}

    def dataset(self, path: Path | None, split: str, config: SynthData, *, skip_bad_files: bool = False):  # noqa: ANN201
        if path is not None:
            return NpyFolder(path, skip_bad_files)
        return SynthStream(config) if config.stream else SynthDataset(config)

    def tokenizer(self, config: SynthTokenizerConfig, dim: int) -> Tokenizer:
        return SynthTokenizer(config, dim)

    def fit(self, dataset: Any, config: SynthTokenizerConfig, progress: bool = True) -> SynthTokenizerConfig:  # noqa: ANN401
        """Per-band mean and std of the gain-corrected series, unless the config gives them."""
        if config.mean is not None and config.std is not None:
            return config
        from dataclasses import replace

        from mpt.stats import fit_moments

        mean, std = fit_moments(dataset, lambda s: s.input * s.meta["gain"], progress=progress, what="band statistics")
        return replace(config, mean=mean.tolist(), std=std.clamp_min(1e-6).tolist())

    def visualize(self, figure: Figure, path: Path) -> None:
        path.write_bytes(b"\x89PNG\r\n\x1a\n")


# ---------------------------------------------------------------- a masker and an objective


@dataclass
class StripesConfig:
    every: int = bounded(2, ge=2)  # keep every n-th valid token


def stripes(params: StripesConfig, key: str = "mask") -> Any:  # noqa: ANN401
    def mask(tokens: TokenSet, generator: torch.Generator) -> Mask:
        n = tokens.num_tokens
        idx = torch.arange(n)
        keep = idx[idx % params.every == 0]
        pred = idx[idx % params.every != 0]
        b = tokens.batch_size
        return Mask(keep=keep.expand(b, -1).clone(), pred=pred.expand(b, -1).clone())

    return mask


class MeanPatch(Objective):
    """Predict each hidden token's patch mean from the mean of the visible latents (a toy objective)."""

    def __init__(self, backbone: Any, cfg: Any) -> None:  # noqa: ANN401
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.dim, 1)

    def forward(self, tokens: TokenSet, masks: list[Mask]) -> ObjectiveOutput:
        mask = one_mask(masks, "meanpatch")
        latent = self.backbone.encode(tokens, mask.keep).mean(1, keepdim=True)  # [B, 1, D]
        target = torch.gather(tokens.patches.nanmean(-1).nan_to_num(0.0), 1, mask.pred)
        pred = self.head(latent).squeeze(-1).expand_as(target)
        return ObjectiveOutput(loss=((pred - target) ** 2).mean(), pred=pred)


def _meanpatch_config() -> type:
    from dataclasses import make_dataclass

    from mpt.config import Choice, choice

    return make_dataclass("MeanPatchConfig", [("mask", Choice, choice("maskers", "stripes"))])


MASKER = Registered("stripes", stripes, StripesConfig, "every n-th token visible (synth plugin)")


def objective() -> Registered:
    return Registered("meanpatch", lambda cfg, backbone, modality: MeanPatch(backbone, cfg), _meanpatch_config(),
                      "predict hidden patch means (synth plugin)")
