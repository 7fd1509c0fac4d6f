"""Conformance kit for modality plugins (in the spirit of langchain's standard tests).

A plugin author checks that their modality honours the contract end to end — the entry point
and ``PLUGIN_API``, recipes, demo data → collate → tokenize → mask → encode → MAE and JEPA loss →
backward, determinism under a seed, padding tokens that never change valid features, save →
``load_encoder`` → same features, a PNG figure, and corrupt files rejected with an error naming
them — in either of two ways::

    # tests/test_conformance.py of the plugin (pytest)
    from mpt.testing import ModalityConformance

    class TestMyModality(ModalityConformance):
        modality = "mymodality"
        sets = ("tokenizer.patch=8",)      # optional: make the tiny model tinier

    $ mpt plugin validate mymodality     # the same checks from the command line

Models are shrunk to one block of width 32 so every check runs in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from mpt.backbone import build_backbone
from mpt.config import Config, build_config
from mpt.contract import PLUGIN_API, Batch, Mask, Modality, Sample, Tokenizer, TokenSet, as_masks
from mpt.errors import DataError
from mpt.objectives import Objective
from mpt.pretrained import encoder_card, load_encoder, save_encoder
from mpt.registry import GROUP, get_modality
from mpt.trainer import fit_statistics

TINY_FLAGS = {
    "model": {"dim": 32, "depth": 1, "heads": 2, "drop_path": 0.0},
    "mae": {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
    "jepa": {"predictor_dim": 32, "predictor_depth": 1, "predictor_heads": 2},
    "train": {"batch_size": 2},
}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


class Kit:
    """The objects every check needs, built once: modality, tiny config, a demo batch."""

    def __init__(self, modality: str, sets: Sequence[str] = ()) -> None:
        self.modality: Modality = get_modality(modality)
        self.sets = tuple(sets)
        config = build_config(self.modality, None, None, self.sets, {**TINY_FLAGS, "objective": "mae"})
        self.dataset = self.modality.dataset(None, "train", config.data)
        self.fitted = fit_statistics(self.modality, self.dataset, config, progress=False).tokenizer
        self.config: Config = self.make_config("mae")
        self.batch: Batch = self.modality.collate([self.dataset[i] for i in range(2)])

    def make_config(self, objective: str, recipe: str | None = None) -> Config:
        """The tiny config of ``objective``, its tokenizer statistics fitted on the demo data as the
        trainer fits them (:meth:`Modality.fit`) when the recipe is the default one."""
        cfg = build_config(self.modality, recipe, None, self.sets, {**TINY_FLAGS, "objective": objective})
        return dataclasses.replace(cfg, tokenizer=self.fitted) if recipe is None else cfg

    @functools.cached_property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer of the tiny config (built once; parameter-free calls only)."""
        return build_backbone(self.modality, self.config.tokenizer, self.config.model).tokenizer

    def tokens(self) -> TokenSet:
        backbone = build_backbone(self.modality, self.config.tokenizer, self.config.model)
        return backbone.tokens(self.batch)

    # ----------------------------------------------------------------------------------- checks

    def check_entry_point(self) -> None:
        from importlib.metadata import entry_points

        names = [ep.name for ep in entry_points(group=GROUP)]
        assert self.modality.name in names, (
            f"no '{self.modality.name}' entry point in group '{GROUP}' (found {sorted(names)}); declare it in "
            f"pyproject.toml: [project.entry-points.\"{GROUP}\"] {self.modality.name} = \"pkg:ModalityClass\"")
        assert self.modality.plugin_api == PLUGIN_API, (
            f"plugin_api {self.modality.plugin_api} != mpt's PLUGIN_API {PLUGIN_API}")

    def check_recipes(self) -> None:
        recipes = self.modality.recipes()
        assert self.modality.default_recipe in recipes, (
            f"default_recipe '{self.modality.default_recipe}' is not among the recipes {sorted(recipes)}")
        for name in recipes:
            build_config(self.modality, name)  # raises ConfigError naming the bad key

    def check_demo_data(self) -> None:
        assert len(cast(Sized, self.dataset)) >= 2, "the embedded demo data must hold at least 2 samples"
        item = self.dataset[0]
        assert isinstance(item, Sample), "items must be mpt.Sample"
        inputs = item.input.values() if isinstance(item.input, dict) else [item.input]
        assert all(isinstance(x, torch.Tensor) for x in inputs), "Sample.input must be a tensor or named tensors"
        if not type(self.tokenizer).missing_values:
            assert all(torch.isfinite(x.float()).all() for x in inputs), "demo sample 0 holds NaN/Inf"
        assert isinstance(self.batch, Batch), "Modality.collate must return an mpt.Batch (PLUGIN_API 2)"
        if hasattr(self.dataset, "reseed"):
            self.dataset.reseed(1)
            a, b = self.modality.collate([self.dataset[1]]), self.modality.collate([self.dataset[1]])
            assert torch.equal(a.tensor if not isinstance(a.input, dict) else a.input[next(iter(a.input))],
                               b.tensor if not isinstance(b.input, dict) else b.input[next(iter(b.input))]), \
                "an item must depend only on (seed, index)"

    def check_tokenize(self) -> None:
        tokens = self.tokens()
        assert tokens.batch_size == self.batch.batch_size * tokens.rows_per_sample, \
            "rows_per_sample rows of tokens per sample"
        declared = self.tokenizer.patch_shape
        assert tuple(declared) == tokens.patch_shape, (
            f"the tokenizer declares patch_shape {tuple(declared)} but tokenize gives {tokens.patch_shape}")
        patches = tokens.patches.float()
        assert not torch.isinf(patches).any() and torch.isfinite(tokens.coords.float()).all(), \
            "tokens hold ±Inf patches or non-finite coords"
        if not type(self.tokenizer).missing_values:  # NaN only pads smaller patches of a group, never a whole token
            assert not patches.flatten(2).isnan().all(-1).any(), "a token whose patch is all NaN"
        again = self.tokens().patches  # NaN (missing values, group padding) compares equal to NaN here
        assert torch.allclose(again, tokens.patches, rtol=0, atol=0, equal_nan=True), "tokenize must be deterministic"
        assert not any(p.requires_grad for p in (tokens.patches, tokens.coords)), "tokenize must be parameter-free"

    def model(self, cfg: Config) -> tuple[Objective, TokenSet, list[Mask]]:
        """The objective ``cfg`` describes (seeded), the demo batch's tokens and the masks of them."""
        from mpt.trainer import build_model

        torch.manual_seed(0)
        model, masker = build_model(cfg, self.modality)
        tokens = model.backbone.tokens(self.batch)
        return model, tokens, as_masks(masker(tokens, torch.Generator().manual_seed(0)))

    def check_objective(self, objective: str) -> None:
        model, tokens, mask = self.model(self.make_config(objective))
        out = model(tokens, mask)
        assert out.loss.ndim == 0 and math.isfinite(out.loss.item()), f"{objective} loss is {out.loss}"
        out.loss.backward()
        params = [p for p in model.backbone.tokenizer.parameters() if p.requires_grad]
        grads = [p.grad for p in params if p.grad is not None]
        assert params and len(grads) == len(params), "every tokenizer parameter must get a gradient"
        assert any(g.abs().sum() > 0 for g in grads), "tokenizer gradients are all zero"

    def check_determinism(self) -> None:
        """Same seed → same initial weights, mask and loss; the masker is a function of its generator."""
        losses, masks = [], []
        for _ in range(2):
            model, tokens, mask = self.model(self.config)
            model.eval()
            with torch.no_grad():
                losses.append(model(tokens, mask).loss.item())
            masks.append(mask)
        assert losses[0] == losses[1], f"two seeded builds give losses {losses}"
        assert all(torch.equal(a.keep, b.keep) and torch.equal(a.pred, b.pred) for a, b in zip(*masks, strict=True))

    def check_padding(self) -> None:
        """Tokens marked invalid (padding) must not change the features of the valid ones (eval mode)."""
        torch.manual_seed(0)
        backbone = build_backbone(self.modality, self.config.tokenizer, self.config.model).eval()
        tokens = backbone.tokens(self.batch)
        prefix, n = backbone.encoder.num_prefix, tokens.num_tokens
        with torch.no_grad():
            base = backbone.encode(tokens)[:, prefix:]
            junk = torch.randn_like(tokens.patches.nan_to_num(0.0)) * 3
            valid = tokens.valid if tokens.valid is not None else torch.ones(tokens.patches.shape[:2], dtype=torch.bool)
            def twice(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else torch.cat([t, t.flip(1)], 1)

            padded = TokenSet(patches=torch.cat([tokens.patches, junk], 1),
                              coords=torch.cat([tokens.coords, tokens.coords.flip(1)], 1),
                              valid=torch.cat([valid, torch.zeros_like(valid)], 1),
                              groups=twice(tokens.groups), weight=twice(tokens.weight),
                              rows_per_sample=tokens.rows_per_sample)
            out = backbone.encode(padded)[:, prefix : prefix + n]
        keep = valid.unsqueeze(-1).expand_as(base)
        assert torch.allclose(out[keep], base[keep], atol=1e-4), (
            "padding tokens changed the features of valid tokens: embed must work per token")

    def check_bad_files(self, workdir: Path) -> None:
        """A corrupt and an empty file of every extension in ``Modality.extensions`` raise a
        DataError that names the file."""
        assert self.modality.extensions, "Modality.extensions must list the file extensions dataset() reads"
        folder = workdir / "bad-files"
        folder.mkdir(exist_ok=True)
        for ext in self.modality.extensions:
            for kind, content in (("corrupt", b"\x00\xff\x13 not a valid file \x89\n" * 4), ("empty", b"")):
                path = folder / f"{kind}{ext}"
                path.write_bytes(content)
                try:
                    self.modality.dataset(path, "train", self.config.data)
                except DataError as exc:
                    assert path.name in str(exc), f"the error for a {kind} {ext} file does not name it: {exc}"
                else:
                    raise AssertionError(f"a {kind} {ext} file was accepted")
                finally:
                    path.unlink()

    def check_round_trip(self, workdir: Path) -> None:
        cfg = self.config
        backbone = build_backbone(self.modality, cfg.tokenizer, cfg.model).eval()
        path = save_encoder(backbone, encoder_card(cfg, backbone, {"data": "conformance"}), workdir / "encoder")
        loaded = load_encoder(path)
        with torch.no_grad():
            a, b = backbone(self.batch), loaded(self.batch)
        assert a.tokens.shape == b.tokens.shape and a.pooled.shape == (self.batch.batch_size, cfg.model.dim)
        assert torch.allclose(a.tokens, b.tokens, atol=1e-5), "load_encoder gives other features"

    def check_figure(self, workdir: Path) -> None:
        model, tokens, mask = self.model(self.config)
        with torch.no_grad():
            figure = model.figure(self.batch, tokens, mask, model(tokens, mask))
        path = workdir / "figure.png"
        self.modality.visualize(figure, path)
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "visualize must write a PNG"

    def checks(self, workdir: Path) -> dict[str, Callable[[], None]]:
        return {
            "entry point + PLUGIN_API": self.check_entry_point,
            "recipes parse": self.check_recipes,
            "demo data": self.check_demo_data,
            "tokenize": self.check_tokenize,
            "mae loss + backward": lambda: self.check_objective("mae"),
            "jepa loss + backward": lambda: self.check_objective("jepa"),
            "deterministic under a seed": self.check_determinism,
            "padding never changes valid tokens": self.check_padding,
            "save + load_encoder": lambda: self.check_round_trip(workdir),
            "figure": lambda: self.check_figure(workdir),
            "bad files name the file": lambda: self.check_bad_files(workdir),
        }


def validate(modality: str, sets: Sequence[str] = ()) -> list[CheckResult]:
    """Run every check on ``modality``; a failure is reported, not raised."""
    try:
        kit = Kit(modality, sets)
    except Exception as exc:  # report the first failure of the set-up itself
        return [CheckResult("load + demo batch", False, f"{type(exc).__name__}: {exc}")]
    results = [CheckResult("load + demo batch", True)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in kit.checks(Path(tmp)).items():
            try:
                check()
                results.append(CheckResult(name, True))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a line of the report
                results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results


class ModalityConformance:
    """Subclass in a plugin's tests with ``modality = "name"`` (and optional ``sets``)."""

    modality: str
    sets: tuple[str, ...] = ()
    _kits: dict[tuple[str, tuple[str, ...]], Kit] = {}

    @property
    def kit(self) -> Kit:
        key = (self.modality, tuple(self.sets))
        if key not in self._kits:
            self._kits[key] = Kit(self.modality, self.sets)
        return self._kits[key]

    def test_entry_point(self) -> None:
        self.kit.check_entry_point()

    def test_recipes_parse(self) -> None:
        self.kit.check_recipes()

    def test_demo_data(self) -> None:
        self.kit.check_demo_data()

    def test_tokenize(self) -> None:
        self.kit.check_tokenize()

    def test_mae_loss_and_backward(self) -> None:
        self.kit.check_objective("mae")

    def test_jepa_loss_and_backward(self) -> None:
        self.kit.check_objective("jepa")

    def test_deterministic_under_a_seed(self) -> None:
        self.kit.check_determinism()

    def test_padding_never_changes_valid_tokens(self) -> None:
        self.kit.check_padding()

    def test_bad_files_name_the_file(self, tmp_path: Path) -> None:
        self.kit.check_bad_files(tmp_path)

    def test_save_and_load_encoder(self, tmp_path: Path) -> None:
        self.kit.check_round_trip(tmp_path)

    def test_figure(self, tmp_path: Path) -> None:
        self.kit.check_figure(tmp_path)
