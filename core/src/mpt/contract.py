"""The plugin contract (PLUGIN_API 2): what a modality provides and what the core consumes.

Data flow of one step (see docs/guide.md)::

    files --Modality.dataset()--> Sample(input, meta) --Modality.collate()--> Batch(input, meta)
    Batch --Tokenizer.normalize()--> Batch --Modality.augment() (training only)--> Batch
    Batch --Tokenizer.tokenize()--> TokenSet(patches, coords, grid, valid, groups, weight)
    TokenSet --Masker--> Mask(keep, pred, decode) (or several masks: V-JEPA)
    Tokenizer.embed(tokens[keep]) + Tokenizer.pos(coords[keep]) --> Encoder --> Objective

Everything above the ``TokenSet`` is modality-specific (a plugin); everything below is generic.
The contract is versioned by :data:`PLUGIN_API`; a plugin declares the version it was built for
in ``Modality.plugin_api``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

PLUGIN_API = 2
"""Version of the plugin contract. Bumped on any incompatible change to this module.

2 (Contract 2): ``Batch`` objects with metadata instead of bare tensors, ``embed`` receives the
``TokenSet`` (groups, coords), token groups and loss weights, decoder masks and several masks per
step, declared ``patch_shape``, ``Modality.augment`` and ``Modality.fit``, registries by name.
"""

Input = Tensor | dict[str, Tensor]
"""A sample's or batch's input: one tensor, or named tensors (multi-input modalities)."""


def _map(x: Input, fn: Callable[[Tensor], Tensor]) -> Input:
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


@dataclass
class Sample:
    """One item of a modality dataset.

    ``input``: a tensor (or named tensors) as the collate function expects it; ``meta``: named
    per-sample metadata the tokenizer may need (ground sample distance, acquisition dates, voxel
    spacing, band wavelengths, true length …) — tensors or numbers, collated along a new batch axis;
    ``source``: where it came from (``"FILE"`` or ``"FILE#PART"`` for a part of a file: a series of a
    multi-series file, a chip of a scene); ``label``: a class index when the files say it.
    """

    input: Input
    source: str = ""
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """A collated batch: what tokenizers, encoders, probes and ``load_encoder`` receive.

    ``input``: ``[B, ...]`` (or named ``[B, ...]`` tensors); ``meta``: named ``[B, ...]`` tensors (or
    per-sample lists for non-numeric values); ``sources`` and ``labels`` ``[B]`` long (None when any
    sample has no label). A variable-length input collated by :func:`collate_samples` is padded and
    carries ``meta["length"]`` ``[B]`` (valid entries along the first input axis). ``skipped``: the
    ``(file, reason)`` of the batch's items that failed when read (:class:`Skipped`), left out of it.
    """

    input: Input
    meta: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    labels: Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of items that failed to read

    @classmethod
    def of(cls, x: Batch | Input) -> Batch:
        """``x`` itself when it is a Batch, else a Batch around a plain input (no metadata)."""
        return x if isinstance(x, Batch) else cls(input=x)

    @property
    def tensor(self) -> Tensor:
        """The input of a single-input modality (a clear error for named inputs)."""
        if isinstance(self.input, dict):
            raise TypeError(f"this batch has named inputs {sorted(self.input)}; read batch.input[name]")
        return self.input

    @property
    def batch_size(self) -> int:
        first = next(iter(self.input.values())) if isinstance(self.input, dict) else self.input
        return int(first.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Inputs and tensor metadata on ``device`` (floating inputs also cast to ``dtype`` if given)."""
        def move(t: Tensor) -> Tensor:
            return t.to(device, dtype) if dtype is not None and t.is_floating_point() else t.to(device)

        meta = {k: move(v) if isinstance(v, Tensor) else v for k, v in self.meta.items()}
        labels = None if self.labels is None else self.labels.to(device)
        return Batch(input=_map(self.input, move), meta=meta, sources=list(self.sources), labels=labels,
                     skipped=list(self.skipped))

    def replace(self, input: Input | None = None, **meta: Any) -> Batch:
        """A copy with another ``input`` and/or metadata entries added or replaced."""
        return Batch(input=self.input if input is None else input, meta={**self.meta, **meta},
                     sources=list(self.sources), labels=self.labels, skipped=list(self.skipped))

    def __getitem__(self, index: slice | Sequence[int] | Tensor) -> Batch:
        """The samples at ``index`` (a slice or indices) as a Batch."""
        idx = index if isinstance(index, slice) else torch.as_tensor(index, dtype=torch.long)

        def take(v: Any) -> Any:
            if isinstance(v, Tensor):
                return v[idx]
            if isinstance(v, list):
                return v[idx] if isinstance(idx, slice) else [v[i] for i in idx.tolist()]
            return v

        return Batch(input=_map(self.input, take), meta={k: take(v) for k, v in self.meta.items()},
                     sources=take(list(self.sources)), labels=None if self.labels is None else self.labels[idx])


@dataclass
class Skipped:
    """What the core's loaders yield for a dataset item whose file failed when read (a decode error
    mid-run, in a DataLoader worker or not): the file and the reason, never a substitute sample.

    The trainer stops with the error, or with ``--skip-bad-files`` leaves the item out of its batch,
    lists the file in ``skipped.txt`` and counts it in the run's summary (see :mod:`mpt.loop`)."""

    source: str
    reason: str


def collate_samples(samples: Sequence[Sample], pad_value: float = 0.0) -> Batch:
    """The default ``Modality.collate``: inputs stacked into ``[B, ...]``.

    Inputs whose first axis differs in length (variable-length audio, a series, a point list) are
    padded at the end with ``pad_value`` and ``meta["length"]`` ``[B]`` gives each sample's length;
    other shape differences are a ValueError. Metadata: tensors and numbers are stacked (``[B, ...]``),
    anything else (strings, lists) is kept as a per-sample list. Labels ``[B]`` when every sample has one.
    """
    if not samples:
        raise ValueError("collate_samples: no samples")
    first = samples[0].input
    if isinstance(first, dict):
        inputs: Input = {k: _stack_padded([s.input[k] for s in samples], pad_value, k)[0]  # type: ignore[index]
                         for k in first}
        lengths = None
    else:
        inputs, lengths = _stack_padded([s.input for s in samples], pad_value, "input")  # type: ignore[misc]
    meta: dict[str, Any] = {}
    for key in samples[0].meta:
        values = [s.meta.get(key) for s in samples]
        if all(isinstance(v, Tensor) for v in values):
            meta[key] = torch.stack(values)  # type: ignore[arg-type]
        elif all(isinstance(v, (int, float, bool)) for v in values):
            meta[key] = torch.tensor(values)
        else:
            meta[key] = values
    if lengths is not None:
        meta["length"] = lengths
    labels = None if any(s.label is None for s in samples) else torch.tensor([int(s.label) for s in samples])  # type: ignore[arg-type]
    return Batch(input=inputs, meta=meta, sources=[s.source for s in samples], labels=labels)


def _stack_padded(xs: list[Tensor], pad_value: float, name: str) -> tuple[Tensor, Tensor | None]:
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) == 1:
        return torch.stack(xs), None
    rests = {tuple(x.shape[1:]) for x in xs}
    if len(rests) != 1 or any(x.ndim == 0 for x in xs):
        raise ValueError(f"collate: sample {name}s of shapes {sorted(shapes)[:4]} differ beyond their first axis; "
                         "give every sample the same shape or write Modality.collate")
    n = max(x.shape[0] for x in xs)
    out = xs[0].new_full((len(xs), n, *xs[0].shape[1:]), pad_value)
    for i, x in enumerate(xs):
        out[i, : x.shape[0]] = x
    return out, torch.tensor([x.shape[0] for x in xs])


@dataclass
class TokenSet:
    """A batch cut into tokens, before any learnable layer.

    Attributes:
        patches: ``[B, N, *patch_shape]`` raw content of each token (pixels, a point group …).
            Tokens of groups with smaller patches (SatMAE band groups of other sizes) are padded to
            the largest with NaN, which embeddings read as absent and targets never score.
        coords: ``[B, N, C]`` float position of each token (grid index, xyz centre, time …; a group
            id may be one of the columns, so a position embedding can encode it, e.g. SatMAE's
            spatial ‖ group split).
        grid: token-grid shape (``prod(grid) == N``, row-major) for structured maskers,
            or ``None`` when the tokens form an unordered set.
        valid: ``[B, N]`` bool, ``False`` for padding tokens, or ``None`` when all are valid.
            Padding is never kept or predicted when valid tokens suffice, never attended to and
            never scored.
        groups: ``[B, N]`` long group/type id of each token (band group, channel, modality) or None
            (one group). ``embed`` may project each group with its own weights; maskers may mask
            groups independently.
        weight: ``[B, N]`` float per-token loss weight (foreground share, 1 − nodata share) or None.
        rows_per_sample: groups folded into the batch instead: 1, or C when a tokenizer makes each
            of C channels its own row of tokens (PatchTST's channel independence). Rows are the
            batch-axis form of ``groups`` — row ``r`` of a sample is group ``r`` — and both are pooled
            per group by ``pool="groups"``; features are rejoined to ``[B, rows_per_sample * N, D]``.
    """

    patches: Tensor
    coords: Tensor
    grid: tuple[int, ...] | None = None
    valid: Tensor | None = None
    groups: Tensor | None = None
    weight: Tensor | None = None
    rows_per_sample: int = 1

    def __post_init__(self) -> None:
        bn = tuple(self.patches.shape[:2])
        if tuple(self.coords.shape[:2]) != bn:
            raise ValueError(f"TokenSet: patches {tuple(self.patches.shape)} and coords "
                             f"{tuple(self.coords.shape)} disagree on [B, N]")
        for name in ("valid", "groups", "weight"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != bn:
                raise ValueError(f"TokenSet: {name} has shape {tuple(t.shape)}, expected [B, N] = {bn}")
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

    def valid_or_ones(self) -> Tensor:
        """``valid``, or all True ``[B, N]``."""
        if self.valid is not None:
            return self.valid
        return torch.ones(self.patches.shape[:2], dtype=torch.bool, device=self.patches.device)

    def select(self, index: Tensor) -> TokenSet:
        """Tokens at ``index`` ``[B, n]`` (per sample); the result is a set (``grid=None``)."""
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else torch.gather(t, 1, index)

        return TokenSet(patches=gather_tokens(self.patches, index), coords=gather_tokens(self.coords, index),
                        grid=None, valid=pick(self.valid), groups=pick(self.groups), weight=pick(self.weight),
                        rows_per_sample=self.rows_per_sample)

    def loss_weight(self, index: Tensor) -> Tensor | None:
        """Per-token loss weight ``[B, n]`` of the tokens at ``index``: validity × ``weight``
        (None when every token counts fully)."""
        w = None if self.weight is None else torch.gather(self.weight.float(), 1, index)
        if self.valid is not None:
            v = torch.gather(self.valid, 1, index).float()
            w = v if w is None else w * v
        return w


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b]]`` for every sample: ``[B, N, *rest]`` × ``[B, n]`` → ``[B, n, *rest]``."""
    rest = x.shape[2:]
    idx = index.reshape(*index.shape, *([1] * len(rest))).expand(*index.shape, *rest)
    return torch.gather(x, 1, idx)


@dataclass
class Mask:
    """Which tokens the encoder sees, which ones are hidden, and which ones the decoder rebuilds.

    ``keep`` ``[B, Nk]`` and ``pred`` ``[B, Np]`` are token indices, disjoint per sample, sorted, with
    the same counts for every sample (so they batch without padding). ``decode`` ``[B, Nd]`` (optional,
    VideoMAE V2's decoder masking, Wang et al. CVPR 2023) is the set of tokens the decoder keeps; it
    may overlap ``keep``. The MAE decoder then reconstructs, and the loss scores, only
    :meth:`targets` = ``pred ∩ decode`` (equal counts per sample: the masker guarantees it).
    """

    keep: Tensor
    pred: Tensor
    decode: Tensor | None = None

    @property
    def ratio(self) -> float:
        """Share of the tokens that are hidden from the encoder (for logging)."""
        n = self.keep.shape[1] + self.pred.shape[1]
        return self.pred.shape[1] / max(n, 1)

    def targets(self) -> Tensor:
        """The tokens to reconstruct and score ``[B, Nt]``: ``pred``, or ``pred ∩ decode``."""
        if self.decode is None:
            return self.pred
        hit = (self.pred[:, :, None] == self.decode[:, None, :]).any(-1)  # [B, Np]
        counts = hit.sum(1)
        if int(counts.min()) != int(counts.max()) or int(counts.min()) == 0:
            raise ValueError(f"Mask.targets: pred ∩ decode holds {counts.tolist()} tokens per sample; a decoder "
                             "mask must leave the same non-zero count in every sample")
        return self.pred[hit].reshape(self.pred.shape[0], -1)


Masks = Mask | list[Mask]
"""What a masker returns: one mask, or several for one step (V-JEPA's two mask families)."""


def as_masks(masks: Masks) -> list[Mask]:
    """A masker's result as a non-empty list."""
    out = [masks] if isinstance(masks, Mask) else list(masks)
    if not out:
        raise ValueError("a masker returned no mask")
    return out


class Masker(Protocol):
    """A pure function of a token layout and a generator: same inputs, same mask(s)."""

    def __call__(self, tokens: TokenSet, generator: torch.Generator) -> Masks: ...


class Tokenizer(nn.Module):
    """Turns a raw batch into tokens (``tokenize``, parameter-free) and embeds them.

    Subclasses implement :meth:`tokenize`, :meth:`embed` and :meth:`card`, and set
    ``coord_dim``, ``pos_kind`` ("sincos" for grid coordinates, "mlp" for continuous ones,
    "learned" for a table over a grid of ``pos_size`` integer coordinates, "identity", "none") and
    ``patch_shape`` (the per-token ``patches`` shape, known from the config: it sizes the MAE head,
    no data is read for it) before calling ``super().__init__(dim, pos_size)``; the class attribute
    ``grid_axes`` says how many grid axes the tokens form (0 = an unordered set; maskers that need a
    grid are refused before training). The base class builds ``self.pos``.

    ``missing_values = True`` declares that NaN in a raw batch marks a missing value this
    tokenizer handles (time series: never embedded as a number, never a training target);
    otherwise NaN in a batch is an input error.

    Who calls what: the core calls ``normalize`` then ``tokenize`` on every batch — in training,
    feature extraction and a loaded encoder alike (``Backbone.tokens``) — so per-sample input
    normalisation lives in ``normalize`` and nowhere else.
    """

    coord_dim: int
    pos_kind: str
    patch_shape: tuple[int, ...]
    grid_axes: ClassVar[int] = 0
    missing_values: ClassVar[bool] = False

    def __init__(self, dim: int, pos_size: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.pos_size = None if pos_size is None else tuple(int(s) for s in pos_size)
        self.pos = self.make_pos(dim)

    def make_pos(self, dim: int) -> nn.Module:
        """A fresh position embedding of this kind at width ``dim`` (encoder, decoder, predictor):
        a module ``[B, n, coord_dim]`` coords → ``[B, n, dim]``."""
        from mpt.pos_embed import create_pos_embed

        return create_pos_embed(self.pos_kind, self.coord_dim, dim, self.pos_size)

    def normalize(self, batch: Batch) -> Batch:
        """Per-sample input normalisation (identity by default), applied before :meth:`tokenize`
        in training and by a loaded encoder alike."""
        return batch

    def tokenize(self, batch: Batch) -> TokenSet:
        """Normalised batch → :class:`TokenSet`. No learnable state; metadata in ``batch.meta``."""
        raise NotImplementedError

    def embed(self, tokens: TokenSet) -> Tensor:
        """Tokens (any subset: ``tokens.patches`` ``[B, n, *patch_shape]``, with their ``groups`` and
        ``coords``) → ``[B, n, dim]``."""
        raise NotImplementedError

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
    """What predicted tokens must match, and the loss (MAE's reconstruction target).

    ``pred`` ``[B, Nt, pred_dim(patch_shape)]`` is the decoder output for the tokens to
    reconstruct; ``patches`` ``[B, Nt, *patch_shape]`` are their raw contents (NaN = absent, never
    scored); ``weight`` ``[B, Nt]`` (or None) is the per-token loss weight (validity × the token
    set's ``weight``): a weighted mean over tokens. ``loss`` returns a scalar. Registered by name
    (core ``patch``; a modality's :meth:`Modality.targets`; entry points ``mpt.targets``), each
    with its own config dataclass (``mae.target: {name: patch, normalize: true}``).
    """

    def pred_dim(self, patch_shape: Sequence[int]) -> int:
        return math.prod(patch_shape)

    def loss(self, pred: Tensor, patches: Tensor, weight: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def reconstruct(self, pred: Tensor, patches: Tensor) -> Tensor:
        """Decoder output in the layout of ``patches`` (for figures)."""
        return pred.reshape(patches.shape)


def weighted_mean(per_token: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``[B, n]`` per-token losses under ``weight`` ``[B, n]`` (None: the plain mean)."""
    if weight is None:
        return per_token.mean()
    w = weight.to(per_token.dtype)
    return (per_token * w).sum() / w.sum().clamp_min(1e-12)


SPLITS = ("train", "probe", "test")
"""Dataset splits: pretraining (augmented), training files read deterministically, held-out files."""


class SampleDataset(Protocol):
    """What ``Modality.dataset`` returns: a map-style dataset of :class:`Sample` (``len`` and
    indexing), or an iterable one (``torch.utils.data.IterableDataset`` yielding Samples)."""

    def __getitem__(self, index: int) -> Sample: ...


@dataclass(frozen=True)
class Adaptation:
    """A change of the recipe that ``Modality.adapt`` proposes for the data at hand, or guidance.

    ``key`` is a dotted config key (``data.context``), ``value`` the value proposed (None: guidance
    only, nothing is changed) and ``reason`` one sentence a user reads (what in the data called for it)."""

    key: str
    value: Any
    reason: str


@dataclass
class Recipe:
    """A named, validated config file shipped by a plugin (paper setting or demo size)."""

    name: str
    path: Path
    description: str = ""


@dataclass
class Figure:
    """What ``Modality.visualize`` receives: one batch as the objective saw it.

    ``batch`` is the raw batch as collated (before ``Tokenizer.normalize``; call
    ``tokenizer.normalize(batch)`` for the frame the tokens live in); ``reconstruction``
    ``[B, Nt, *patch_shape]`` is MAE's output for ``mask.targets()`` (None for JEPA)."""

    batch: Batch
    tokens: TokenSet
    mask: Mask
    reconstruction: Tensor | None = None
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

    ``feature_pool`` is the pool (:data:`mpt.features.POOLS`) ``mpt probe`` and ``mpt evaluate`` use
    when the user names none: "mean" by default; "flat" where token order carries meaning.

    A map-style dataset may define ``reseed(seed: int)``: the trainer calls it at the start of every
    epoch so per-sample randomness (augmentation, point sampling) is a function of (seed, index) and
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
    feature_pool: ClassVar[str] = "mean"

    def dataset(self, path: Path | None, split: str, config: Any, *,
                skip_bad_files: bool = False) -> SampleDataset:
        """Samples (:class:`Sample`) from ``path`` (a file or folder), or the embedded demo data
        when ``path`` is None. Files are opened when an item is read, not here
        (:class:`mpt.files.LazyFiles`). Bad files raise :class:`mpt.errors.DataError` naming the
        file, or with ``skip_bad_files`` are recorded in ``dataset.skipped`` (``(path, reason)``).

        ``split`` is one of :data:`SPLITS`: "train" (pretraining: the training files, random
        augmentation), "probe" (the same files, deterministic: what downstream feature extraction
        reads) or "test" (held-out files where the data has an official split, deterministic).
        Samples carry a class index in ``Sample.label`` (and the dataset its class names in
        ``classes``) when the files say it (folder names, a format's labels)."""
        raise NotImplementedError

    def collate(self, samples: list[Sample]) -> Batch:
        """Samples → :class:`Batch` (default :func:`collate_samples`: stack, pad the first axis)."""
        return collate_samples(samples)

    def tokenizer(self, config: Any, dim: int) -> Tokenizer:
        raise NotImplementedError

    def augment(self, batch: Batch, config: Any, generator: torch.Generator) -> Batch:
        """Training-time augmentation of a normalised batch (after ``Tokenizer.normalize``, before
        ``tokenize``) under the data ``config``, drawn from ``generator`` (seeded per step: exact
        resume). Called on training batches only (pretraining and fine-tuning). Identity by default;
        per-sample augmentation that must precede normalisation belongs in the dataset."""
        return batch

    def fit(self, dataset: SampleDataset, config: Any, progress: bool = True) -> Any:
        """Fitted statistics: the tokenizer ``config`` completed from the training ``dataset``
        (per-band mean/std, fbank statistics, intensity percentiles …), or ``config`` unchanged.

        Called once by the trainer before the model is built (see :func:`mpt.stats.fit_moments`
        for a progress-bar pass over the data); the returned config is what the run's config.yaml
        and the encoder card hold, so training and :func:`mpt.load_encoder` never disagree. Return
        ``config`` itself when nothing needs fitting (values already set by the recipe or --set)."""
        return config

    def adapt(self, dataset: SampleDataset, config: Any) -> list[Adaptation]:
        """Changes of the run's :class:`mpt.config.Config` ``config`` that suit the training ``dataset``
        (e.g. a window as long as short series), and guidance where none can be made.

        Called by the trainer before :meth:`fit` while ``train.adapt`` is on; it applies a proposal
        only to a key the user did not set (``--config``, ``--set``, flags: the recipe's values yield),
        reopens the dataset when a ``data`` key changed, and asks again until nothing changes, so a
        proposal may depend on values proposed before. Every applied change and every guidance is
        printed and written at the top of ``OUT/config.yaml``. None by default."""
        return []

    feature_suffixes: ClassVar[tuple[str, ...]] = ()  # output formats of write_features (e.g. ".tif")

    def write_features(self, backbone: Any, data: Path, out: Path, config: Any, batch_size: int = 64,
                       progress: bool = True) -> Path:
        """Optional: ``mpt embed --out FILE`` for a file type of ``feature_suffixes`` — the features of
        ``data`` (its files read with the data ``config``) written by the modality itself, e.g. a
        feature raster with one pixel per patch over a scene of any size (satellite). Returns ``out``."""
        raise NotImplementedError(f"{type(self).__name__} writes no {out.suffix} features")

    def downstream_data(self, config: Any) -> Any:
        """The data config feature extraction (probe, embed, finetune) uses, from the one the encoder
        was pretrained with (e.g. read each file once instead of ``repeats`` times). Identity by default."""
        return config

    def targets(self) -> dict[str, Any]:
        """Named MAE targets of this modality: ``{name: Target class}`` or ``{name: Registered}``
        (the core adds its own, see :mod:`mpt.targets`)."""
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


def iter_samples(dataset: SampleDataset) -> Iterable[Sample]:
    """Every sample of a map-style (by index) or iterable dataset, in order."""
    if hasattr(dataset, "__len__"):
        return (dataset[i] for i in range(len(dataset)))  # type: ignore[arg-type]
    return iter(dataset)  # type: ignore[call-overload]
