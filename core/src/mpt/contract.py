"""The plugin contract: what a modality provides and what the core consumes.

Data flow of one step (see docs/guide.md)::

    files --Modality.dataset()--> samples --Modality.collate()--> batch tensor
    batch --Tokenizer.tokenize()--> TokenSet --Masker--> Mask(keep, pred)
    Tokenizer.embed(patches[keep]) + Tokenizer.pos(coords[keep]) --> Encoder --> Objective

Everything above the ``TokenSet`` is modality-specific (a plugin); everything below is generic.
The contract is versioned by :data:`PLUGIN_API`; a plugin declares the version it was built for
in ``Modality.plugin_api``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

PLUGIN_API = 1
"""Version of the plugin contract. Bumped on any incompatible change to this module."""


@dataclass
class TokenSet:
    """A batch cut into tokens, before any learnable layer.

    Attributes:
        patches: ``[B, N, *patch_shape]`` raw content of each token (pixels, a point group …).
        coords: ``[B, N, C]`` float position of each token (grid index, xyz centre, time …).
        grid: token-grid shape (``prod(grid) == N``, row-major) for structured maskers,
            or ``None`` when the tokens form an unordered set.
        valid: ``[B, N]`` bool, ``False`` for padding tokens, or ``None`` when all are valid.
        rows_per_sample: how many consecutive rows come from one input sample: 1, or C when a
            tokenizer folds C channels into the batch (PatchTST's channel independence). The
            rows of one sample are rejoined into ``[B, rows_per_sample * N, D]`` features downstream.
    """

    patches: Tensor
    coords: Tensor
    grid: tuple[int, ...] | None = None
    valid: Tensor | None = None
    rows_per_sample: int = 1

    def __post_init__(self) -> None:
        if self.patches.shape[:2] != self.coords.shape[:2]:
            raise ValueError(
                f"TokenSet: patches {tuple(self.patches.shape)} and coords "
                f"{tuple(self.coords.shape)} disagree on [B, N]"
            )
        if self.grid is not None and math.prod(self.grid) != self.patches.shape[1]:
            raise ValueError(f"TokenSet: grid {self.grid} does not hold N={self.patches.shape[1]} tokens")
        if self.rows_per_sample < 1 or self.patches.shape[0] % self.rows_per_sample:
            raise ValueError(f"TokenSet: {self.patches.shape[0]} rows are not a multiple of "
                             f"rows_per_sample={self.rows_per_sample}")

    @property
    def batch_size(self) -> int:
        return int(self.patches.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.patches.shape[1])

    @property
    def patch_shape(self) -> tuple[int, ...]:
        return tuple(self.patches.shape[2:])

    def select(self, index: Tensor) -> TokenSet:
        """Tokens at ``index`` ``[B, n]`` (per sample); the result is a set (``grid=None``)."""
        return TokenSet(
            patches=gather_tokens(self.patches, index),
            coords=gather_tokens(self.coords, index),
            grid=None,
            valid=None if self.valid is None else torch.gather(self.valid, 1, index),
            rows_per_sample=self.rows_per_sample,
        )


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b]]`` for every sample: ``[B, N, *rest]`` × ``[B, n]`` → ``[B, n, *rest]``."""
    rest = x.shape[2:]
    idx = index.reshape(*index.shape, *([1] * len(rest))).expand(*index.shape, *rest)
    return torch.gather(x, 1, idx)


@dataclass
class Mask:
    """Which tokens the encoder sees and which ones the objective predicts.

    ``keep`` ``[B, Nk]`` and ``pred`` ``[B, Np]`` are token indices, disjoint per sample, with the
    same counts for every sample of the batch (so they batch without padding).
    """

    keep: Tensor
    pred: Tensor

    @property
    def ratio(self) -> float:
        """Share of the tokens that are hidden from the encoder (for logging)."""
        n = self.keep.shape[1] + self.pred.shape[1]
        return self.pred.shape[1] / max(n, 1)


class Masker(Protocol):
    """A pure function of a token layout and a generator: same inputs, same mask."""

    def __call__(self, tokens: TokenSet, generator: torch.Generator) -> Mask: ...


class Tokenizer(nn.Module):
    """Turns a raw batch into tokens (``tokenize``, parameter-free) and embeds them.

    Subclasses implement :meth:`tokenize`, :meth:`embed` and :meth:`card`, and set
    ``coord_dim`` and ``pos_kind`` ("sincos" for grid coordinates, "mlp" for continuous ones,
    "learned" for a table over a grid of ``pos_size`` integer coordinates) before calling
    ``super().__init__(dim, pos_size)``. The base class builds ``self.pos`` from those.

    ``missing_values = True`` declares that NaN in a raw batch marks a missing value this
    tokenizer handles (time series: never embedded as a number, never a training target);
    otherwise NaN in a batch is an input error.
    """

    coord_dim: int
    pos_kind: str
    missing_values: ClassVar[bool] = False

    def __init__(self, dim: int, pos_size: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.pos_size = None if pos_size is None else tuple(int(s) for s in pos_size)
        self.pos = self.make_pos(dim)

    def make_pos(self, dim: int) -> nn.Module:
        """A fresh position embedding of this kind at width ``dim`` (encoder, decoder, predictor)."""
        from mpt.pos_embed import create_pos_embed

        return create_pos_embed(self.pos_kind, self.coord_dim, dim, self.pos_size)

    def tokenize(self, batch: Tensor) -> TokenSet:
        """Raw batch (as ``Modality.collate`` returns it) → :class:`TokenSet`. No learnable state."""
        raise NotImplementedError

    def embed(self, patches: Tensor) -> Tensor:
        """``[B, n, *patch_shape]`` → ``[B, n, dim]``."""
        raise NotImplementedError

    def normalize(self, batch: Tensor) -> Tensor:
        """Per-sample input normalisation that a pretrained encoder applies to raw batches
        (the modality's dataset applies the same before augmentation). Identity by default."""
        return batch

    def card(self) -> dict[str, Any]:
        """JSON-able settings that rebuild this tokenizer (written to the encoder card)."""
        raise NotImplementedError

    def adapt_weight(self, name: str, saved: Tensor, saved_config: Any) -> Tensor:
        """Optional: carry the saved tensor ``name`` of a pretrained encoder into this tokenizer.

        :func:`mpt.load_encoder` with tokenizer overrides builds this tokenizer from the encoder
        card's tokenizer config with the overrides applied; ``saved_config`` is the card's config
        (before the overrides) and ``saved`` the tensor stored under ``tokenizer.<name>``, whose shape
        differs from this tokenizer's ``state_dict()[name]`` (e.g. ``"proj.weight"`` after a channel
        count change). Return the tensor in the new shape, by a rule the plugin documents (see
        :func:`mpt.pretrained.adapt_channels` for the core's channel-count rule). Learned position
        tables never come here: the core resamples them (:func:`mpt.pos_embed.resample_pos_table`).

        The default supports no change: it raises a :class:`~mpt.errors.CheckpointError` naming the
        tensor and both shapes.
        """
        from mpt.errors import CheckpointError

        want = tuple(self.state_dict()[name].shape) if name in self.state_dict() else "?"
        raise CheckpointError(
            f"the saved tensor tokenizer.{name} has shape {tuple(saved.shape)} and the tokenizer built with the "
            f"overridden settings needs {want}; {type(self).__name__} has no rule for this change "
            "(Tokenizer.adapt_weight): keep the encoder card's value of the setting that changes it")


class Target(nn.Module):
    """What predicted tokens must match, and the loss.

    ``pred`` ``[B, Np, pred_dim]`` is the decoder output; ``patches`` ``[B, Np, *patch_shape]``
    are the raw contents of the predicted tokens. ``loss`` returns a scalar.
    """

    def pred_dim(self, patch_shape: Sequence[int]) -> int:
        return math.prod(patch_shape)

    def loss(self, pred: Tensor, patches: Tensor) -> Tensor:
        raise NotImplementedError

    def reconstruct(self, pred: Tensor, patches: Tensor) -> Tensor:
        """Decoder output in the layout of ``patches`` (for figures)."""
        return pred.reshape(patches.shape)


SPLITS = ("train", "probe", "test")
"""Dataset splits: pretraining (augmented), training files read deterministically, held-out files."""


@dataclass
class Sample:
    """One item of a modality dataset: ``input`` as the collate function expects it."""

    input: Tensor
    source: str = ""
    label: int | None = None


class SampleDataset(Protocol):
    """What ``Modality.dataset`` returns: a map-style dataset of :class:`Sample`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass
class Recipe:
    """A named, validated config file shipped by a plugin (paper setting or demo size)."""

    name: str
    path: Path
    description: str = ""


@dataclass
class Figure:
    """What ``Modality.visualize`` receives: one batch as the objective saw it."""

    batch: Tensor
    tokens: TokenSet
    mask: Mask
    reconstruction: Tensor | None = None  # [B, Np, *patch_shape] for MAE, None for JEPA
    title: str = ""
    tokenizer: Tokenizer | None = None  # what made ``tokens`` (to map them back to the input's layout)


class Modality:
    """The object a plugin's ``mpt.modalities`` entry point returns (class or instance).

    Attributes a plugin sets: ``name``, ``description``, ``plugin_api`` (the
    :data:`PLUGIN_API` it was written for), ``data_config`` and ``tokenizer_config``
    (dataclasses validated like the rest of the config), ``extensions`` (the file extensions
    ``dataset`` reads, lower case with the dot), ``recipe_dir`` (a folder of recipe
    YAML files, each starting with a ``# description`` line) and ``default_recipe`` (the recipe
    used when the user names none; it must run on a laptop CPU in minutes).

    A dataset may define ``reseed(seed: int)``: the trainer calls it at the start of every epoch
    so per-sample randomness (augmentation, point sampling) is a function of (seed, index) and
    an interrupted run resumes exactly.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    default_recipe: ClassVar[str] = "default"
    plugin_api: ClassVar[int] = PLUGIN_API
    data_config: ClassVar[type]
    tokenizer_config: ClassVar[type]
    recipe_dir: ClassVar[Path | None] = None
    extensions: ClassVar[tuple[str, ...]] = ()

    def dataset(self, path: Path | None, split: str, config: Any, *,
                skip_bad_files: bool = False) -> SampleDataset:
        """Samples (:class:`Sample`) from ``path`` (a file or folder), or the embedded demo data
        when ``path`` is None. Bad files raise :class:`mpt.errors.DataError` naming the file, or
        with ``skip_bad_files`` are recorded in ``dataset.skipped`` (list of ``(path, reason)``).

        ``split`` is one of :data:`SPLITS`: "train" (pretraining: the training files, random
        augmentation), "probe" (the same files, deterministic: what downstream feature extraction
        reads) or "test" (held-out files where the data has an official split, deterministic).
        Samples carry a class index in ``Sample.label`` (and the dataset its class names in
        ``classes``) when the files say it (folder names, a format's labels)."""
        raise NotImplementedError

    def collate(self, samples: list[Sample]) -> Tensor:
        return torch.stack([s.input for s in samples])

    def tokenizer(self, config: Any, dim: int) -> Tokenizer:
        raise NotImplementedError

    def targets(self) -> dict[str, Callable[[], Target]]:
        """Named MAE targets of this modality (the core adds its own, see :mod:`mpt.targets`)."""
        return {}

    def recipes(self) -> dict[str, Recipe]:
        """Named recipes: every ``*.yaml`` of ``recipe_dir``, described by its first comment line."""
        out = {}
        for path in sorted(self.recipe_dir.glob("*.yaml")) if self.recipe_dir else []:
            first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "")
            out[path.stem] = Recipe(name=path.stem, path=path, description=first.lstrip("# ").strip())
        return out

    def visualize(self, figure: Figure, path: Path) -> None:
        """Write one PNG for the first sample(s) of ``figure`` to ``path``."""
        raise NotImplementedError
