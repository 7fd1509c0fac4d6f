"""Typed, validated run configuration.

A run's config is a recipe (YAML shipped by the plugin), deep-merged with an optional user file,
then ``--set key.sub=value`` overrides, then CLI flags. :func:`parse` turns the merged dict into
dataclasses and raises :class:`~mpt.errors.ConfigError` naming the bad key and the allowed keys
or values. The modality's own sections (``data``, ``tokenizer``) are dataclasses the plugin
declares (``Modality.data_config`` / ``tokenizer_config``) and are validated the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from mpt.errors import ConfigError

if TYPE_CHECKING:
    from mpt.contract import Modality


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a numeric range, checked by :func:`parse`."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt})


@dataclass
class ModelConfig:
    """ViT encoder over tokens."""

    dim: int = bounded(384, ge=8)  # token width D
    depth: int = bounded(12, ge=1)  # transformer blocks
    heads: int = bounded(6, ge=1)  # attention heads (D must divide by it)
    mlp_ratio: float = bounded(4.0, gt=0)  # MLP hidden width / D
    drop_path: float = bounded(0.0, ge=0, lt=1)  # stochastic depth rate of the last block (linear from 0)
    cls_token: bool = False  # prepend a learnable CLS token
    pos_every_block: bool = False  # Point-MAE adds the position embedding before every block
    norm_eps: float = bounded(1e-6, gt=0)  # LayerNorm eps (MAE, VideoMAE)
    layer_scale: float | None = bounded(None, gt=0)  # LayerScale init value (CaiT); None = off
    num_registers: int = bounded(0, ge=0)  # register tokens (Darcet et al. 2024)


@dataclass
class Choice:
    """A component chosen by name from a registry (:mod:`mpt.registry`) with its validated parameters.

    In YAML it is one mapping, ``{name: random, ratio: 0.75}`` (or just the name, ``chamfer``);
    ``params`` is an instance of the component's config dataclass (None when it takes none).
    """

    name: str
    params: Any = None

    def __getattr__(self, key: str) -> Any:  # cfg.mask.ratio reads the parameter
        params = self.__dict__.get("params")
        if params is not None and not key.startswith("__") and hasattr(params, key):
            return getattr(params, key)
        raise AttributeError(key)


def choice(registry: str, name: str, **params: Any) -> Any:
    """A dataclass field holding a :class:`Choice` of ``registry`` ("maskers", "targets"), default ``name``."""
    return field(default_factory=lambda: make_choice(registry, name, params, ""),
                 metadata={"registry": registry})


def make_choice(registry: str, name: str, params: dict[str, Any], key: str,
                extra: dict[str, Any] | None = None) -> Choice:
    """Look ``name`` up in ``registry`` and validate ``params`` with its config (errors name ``key``)."""
    from mpt.registry import REGISTRIES

    item = REGISTRIES[registry].get(name, _join(key, "name"), extra)
    if item.config is None:
        if params:
            raise ConfigError(_join(key, sorted(params)[0]), f"{registry[:-1]} '{name}' takes no parameters")
        return Choice(name)
    return Choice(name, parse(item.config, params, key))


@dataclass
class MAEConfig:
    """Masked autoencoder (He et al. 2022): masker, decoder and reconstruction target."""

    mask: Choice = choice("maskers", "random")  # masker name (see the masker sections)
    target: Choice = choice("targets", "patch")  # reconstruction target name (see the target sections)
    # drop: hidden tokens are removed from the encoder input and a decoder fills them in (MAE);
    # zero: they keep their place with zeroed contents and a linear head on the encoder output
    # predicts them (PatchTST, SimMIM) — the decoder_* settings are then unused.
    masked_tokens: Literal["drop", "zero"] = "drop"  # drop: MAE, encoder on visible tokens; zero: PatchTST/SimMIM
    decoder_dim: int = bounded(512, ge=8)  # decoder width
    decoder_depth: int = bounded(8, ge=1)  # decoder blocks
    decoder_heads: int = bounded(16, ge=1)  # decoder attention heads
    decoder_window: list[int] | None = None  # local attention windows on the token grid (AudioMAE's decoder)


@dataclass
class JEPAConfig:
    """Joint-embedding predictive architecture (Assran et al. 2023): predictor and EMA teacher.

    ``export``: which encoder becomes ``encoder/`` — "target" (the EMA teacher, as I-JEPA and V-JEPA
    evaluate) or "context" (the student); the encoder card records it.
    """

    mask: Choice = choice("maskers", "multiblock")  # masker name (see the masker sections)
    predictor_dim: int = bounded(384, ge=8)  # predictor width
    predictor_depth: int = bounded(6, ge=1)  # predictor blocks
    predictor_heads: int = bounded(6, ge=1)  # predictor attention heads
    ema: tuple[float, float] = (0.996, 1.0)  # teacher momentum, linear from first to second over the run
    loss: Literal["smooth_l1", "l2", "l1"] = "smooth_l1"  # smooth_l1 (I-JEPA), l2, l1 (V-JEPA)
    export: Literal["target", "context"] = "target"  # encoder written to encoder/: EMA target or context encoder


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay, stepped per optimizer step."""

    lr: float = bounded(1.5e-4, gt=0)  # peak learning rate (absolute, not scaled by batch size)
    min_lr: float = bounded(0.0, ge=0)  # learning rate at the end of the cosine
    weight_decay: float = bounded(0.05, ge=0)  # AdamW weight decay (none on norms, biases, tokens, position tables)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas (MAE)
    warmup_steps: int | None = bounded(None, ge=0)  # linear warm-up length in optimiser steps
    warmup_epochs: float | None = bounded(None, ge=0)  # warm-up in epochs instead (exclusive with warmup_steps)
    grad_clip: float | None = bounded(None, gt=0)  # clip the gradient norm to this; None = no clipping
    accumulate: int = bounded(1, ge=1)  # micro-batches per optimiser step


@dataclass
class TrainConfig:
    """Loop length, logging and checkpointing."""

    batch_size: int = bounded(32, ge=1)  # samples per step and process
    max_steps: int | None = bounded(None, ge=1)  # run length in optimiser steps
    epochs: float | None = bounded(None, gt=0)  # run length in epochs instead (exclusive with max_steps)
    precision: Literal["no", "bf16", "fp16"] = "no"  # mixed precision (bf16 needs AVX512-BF16/AMX on CPU to be fast)
    seed: int = 0  # seed of every random draw (data order, masks, augmentation, init)
    log_every: int = bounded(10, ge=1)  # steps between metrics.jsonl lines
    figure_every: int | None = bounded(None, ge=1)  # default: every log_every steps, and the last step
    checkpoint_every: int | None = bounded(None, ge=1)  # steps between checkpoints (and the last step)
    keep_last: int = bounded(2, ge=1)  # checkpoints kept
    export_every: int | None = bounded(None, ge=1)  # steps between encoder snapshots OUT/encoders/step-N
    adapt: bool = True  # let the modality adapt the recipe's values to the data (Modality.adapt); yours never change
    num_workers: int = bounded(0, ge=0)  # DataLoader worker processes
    threads: int | None = bounded(None, ge=1)  # CPU threads per process; None = the cores other processes leave free
    log_with: Literal["none", "tensorboard", "wandb"] = "none"  # experiment tracker


@dataclass
class Config:
    """The whole resolved run configuration (what ``OUT/config.yaml`` holds)."""

    modality: str  # modality name (set by --modality)
    data: Any
    tokenizer: Any
    recipe: str = ""  # recipe name (set by --recipe)
    objective: str = "mae"  # objective name (mae, jepa or a plugin's; see mpt list)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # one section per registered objective named in the config (``mae:``, ``jepa:``, a plugin's)
    objectives: dict[str, Any] = field(default_factory=dict)
    # dotted keys the user set (--config, --set, flags), which Modality.adapt leaves alone; not saved
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.objective not in self.objectives:  # a Config built in code: the chosen objective's defaults
            from mpt.registry import OBJECTIVES

            config = OBJECTIVES.get(self.objective, "objective").config
            if config is not None:
                self.objectives[self.objective] = config()

    @property
    def objective_config(self) -> Any:
        """The section of the chosen objective (``cfg.objectives[cfg.objective]``)."""
        return self.objectives[self.objective]

    def to_dict(self) -> dict[str, Any]:
        out = to_plain(self)
        del out["explicit"]
        out.update(out.pop("objectives"))
        return out


def to_plain(obj: Any) -> Any:
    """Dataclasses / tuples → plain dicts / lists, ready for YAML or JSON."""
    if isinstance(obj, Choice):
        return {"name": obj.name, **(to_plain(obj.params) if obj.params is not None else {})}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def parse(cls: Any, data: Any, prefix: str = "", overrides: dict[str, type] | None = None,
          context: dict[str, Any] | None = None) -> Any:
    """Build dataclass ``cls`` from ``data``, validating every key, type, choice and range.

    ``overrides`` maps a field name of ``cls`` to the dataclass to use for it (how ``Config``
    gets the plugin's ``data``/``tokenizer`` types). ``context["targets"]`` adds a modality's own
    MAE targets to the target registry for :class:`Choice` fields.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(_join(prefix, unknown[0]), f"unknown key; allowed keys: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        hint = (overrides or {}).get(name, hints[name])
        if name not in data:
            if dataclasses.is_dataclass(hint) and (f.default is dataclasses.MISSING
                                                     and f.default_factory is dataclasses.MISSING):
                kwargs[name] = parse(hint, {}, key, context=context)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(key, "required key is missing")
            continue
        if hint is Choice:
            value = _choice(f.metadata["registry"], data[name], key, context, f.default_factory().name)  # type: ignore[misc,operator]
        else:
            value = _coerce(hint, data[name], key, context)
        _check_range(f, value, key)
        kwargs[name] = value
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _choice(registry: str, value: Any, key: str, context: dict[str, Any] | None, default: str) -> Choice:
    """``name`` or ``{name: ..., **params}`` (no name: the field's ``default``) → a validated :class:`Choice`."""
    if isinstance(value, Choice):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict) and "name" not in value:
        value = {"name": default, **value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(key, f"expected a name or a mapping with a 'name' key, got {value!r}")
    params = {k: v for k, v in value.items() if k != "name"}
    extra = (context or {}).get(registry)
    return make_choice(registry, value["name"], params, key, extra)


def _coerce(hint: Any, value: Any, key: str, context: dict[str, Any] | None = None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, key, context=context)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for member in inner:  # the first member the value fits (`spacing: Literal[...] | list[float]`)
            try:
                return _coerce(member, value, key, context)
            except ConfigError as exc:
                errors.append(str(exc).removeprefix(f"config key '{key}': "))
        if len(errors) == 1:
            raise ConfigError(key, errors[0])
        raise ConfigError(key, f"{value!r} fits none of its forms: " + "; or ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"{value!r} is not allowed; choose one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(key, f"expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if hint is int:
        is_digits = isinstance(value, str) and value.lstrip("-").isdigit()
        if isinstance(value, bool) or not (isinstance(value, int) or is_digits):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
        return out
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    return value


def _check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    if value is None or not isinstance(value, (int, float)):
        return
    m = f.metadata
    for bound, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                            ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        b = m.get(bound)
        if b is not None and not ok(value, b):
            raise ConfigError(key, f"must be {word} {b}, got {value}")


def deep_merge(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``other`` over ``base``, recursively for nested mappings (neither is modified).

    A mapping of ``other`` that names another component (``{name: block}`` over ``{name: random,
    ratio: 0.75}``) replaces the one below instead of merging: the parameters of the old choice
    do not carry over to the new one; parameters over a choice given by name alone (``target:
    chamfer``) apply to that choice."""
    out = dict(base)
    for k, v in other.items():
        below = out.get(k)
        if isinstance(v, dict) and isinstance(below, str) and "name" not in v:
            below = {"name": below}  # a choice given by its name alone (target: chamfer), then its parameters
        renamed = isinstance(v, dict) and isinstance(below, dict) and "name" in v and v["name"] != below.get("name")
        out[k] = deep_merge(below, v) if isinstance(v, dict) and isinstance(below, dict) and not renamed else v
    return out


def apply_set(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``key.sub=value`` override (value parsed as YAML) to a nested dict."""
    return merge_layer(raw, parse_set(assignment))


# Pairs of keys that say the same thing two ways: a layer that sets one clears the other.
EXCLUSIVE = (("train", "max_steps", "epochs"), ("optim", "warmup_steps", "warmup_epochs"))


def merge_layer(raw: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` over ``raw`` (deep merge); setting ``train.max_steps`` clears an earlier
    ``train.epochs`` and vice versa (likewise the two warm-up keys)."""
    out = deep_merge(raw, layer)
    for section, a, b in EXCLUSIVE:
        given = layer[section] if isinstance(layer.get(section), dict) else {}
        for key, other in ((a, b), (b, a)):
            if given.get(key) is not None and isinstance(out.get(section), dict) and other not in given:
                out[section] = {**out[section], other: None}
    return out


def dotted_keys(layer: dict[str, Any], prefix: str = "") -> list[str]:
    """The leaf keys of a nested config layer, dotted: ``{"data": {"context": 9}}`` → ``["data.context"]``."""
    out = []
    for key, value in layer.items():
        name = f"{prefix}{key}"
        out += dotted_keys(value, f"{name}.") if isinstance(value, dict) and value else [name]
    return out


def with_value(cfg: Config, modality: Modality, key: str, value: Any) -> Config:
    """``cfg`` with the dotted ``key`` set to ``value``, validated like a ``--set`` (explicit keys kept)."""
    layer: Any = value
    for part in reversed(key.split(".")):
        layer = {part: layer}
    return dataclasses.replace(parse_config(merge_layer(cfg.to_dict(), layer), modality), explicit=cfg.explicit)


def parse_set(assignment: str) -> dict[str, Any]:
    """``key.sub=value`` → ``{"key": {"sub": value}}`` (value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(assignment, "an override must look like key.sub=value")
    key, text = assignment.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(key or assignment, "an override must look like key.sub=value")
    value = yaml.safe_load(text) if text.strip() else ""
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML config file; a missing, unreadable or non-mapping file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"the file must hold a mapping of sections, got {type(data).__name__}")
    return data


RECORD_ONLY = ("versions", "runtime")
"""Sections a run's config.yaml records but a config never sets (versions; processes and threads)."""


def without_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A config file's mapping without the :data:`RECORD_ONLY` sections, so a run's config.yaml can be
    passed back as ``--config``."""
    return {k: v for k, v in raw.items() if k not in RECORD_ONLY}


def build_config(modality: Modality, recipe: str | None = None, config_file: Path | None = None,
                 sets: Sequence[str] = (), flags: dict[str, Any] | None = None) -> Config:
    """Resolve a run's config: recipe ← ``config_file`` ← ``--set`` overrides ← CLI ``flags``.

    A layer that sets ``train.max_steps`` replaces an ``train.epochs`` of the layers below it
    (and vice versa; likewise ``optim.warmup_steps`` / ``optim.warmup_epochs``).

    ``flags`` is a nested dict (``{"train": {"max_steps": 30}}``); None values are ignored.
    """
    recipes = modality.recipes()
    name = recipe or modality.default_recipe
    if name not in recipes:
        raise ConfigError("recipe", f"unknown recipe '{name}' for {modality.name}; "
                                    f"choose one of {', '.join(sorted(recipes))}")
    raw = load_yaml(recipes[name].path)
    layers = [without_record(load_yaml(config_file))] if config_file is not None else []
    layers += [parse_set(a) for a in sets] + [_drop_none(flags or {})]
    for layer in layers:
        raw = merge_layer(raw, layer)
    raw["modality"] = modality.name
    raw.setdefault("recipe", name)
    explicit = frozenset(key for layer in layers for key in dotted_keys(layer))
    cfg = dataclasses.replace(parse_config(raw, modality), explicit=explicit)
    for section, a, b in EXCLUSIVE:
        values = getattr(cfg, section)
        if getattr(values, a) is not None and getattr(values, b) is not None:
            raise ConfigError(f"{section}.{b}", f"set either {section}.{a} or {section}.{b}, not both")
    return cfg


def parse_config(raw: dict[str, Any], modality: Modality) -> Config:
    """A merged config dict → :class:`Config`: the modality's ``data``/``tokenizer`` sections, and one
    section per registered objective present (the chosen one is always there, with defaults)."""
    from mpt.registry import OBJECTIVES

    raw = dict(raw)
    known = OBJECTIVES.names()
    chosen = raw.get("objective", "mae")
    if not isinstance(chosen, str):
        raise ConfigError("objective", f"expected an objective name, got {chosen!r}")
    OBJECTIVES.get(chosen, "objective")
    context = {"targets": target_choices(modality)}
    sections = {name: raw.pop(name) for name in known if name in raw}
    sections.setdefault(chosen, {})
    fields = [f.name for f in dataclasses.fields(Config) if f.name != "objectives"]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; allowed keys: {', '.join(fields + known)}")
    cfg = parse(Config, raw, overrides={"data": modality.data_config, "tokenizer": modality.tokenizer_config},
                context=context)
    for name, section in sections.items():
        spec = OBJECTIVES.get(name, "objective")
        cfg.objectives[name] = parse(spec.config, section, name, context=context)
    return cfg


def target_choices(modality: Modality) -> dict[str, Any]:
    """A modality's own MAE targets as registry entries (a Target class or a Registered each)."""
    from mpt.errors import PluginError
    from mpt.registry import TARGETS, Registered

    out = {}
    core = set(TARGETS.names())
    for name, t in modality.targets().items():
        if name in core:
            raise PluginError(f"{modality.name}: its target '{name}' has the name of a registered target; rename it")
        doc = (getattr(t, "__doc__", None) or "").strip().split("\n")[0]
        out[name] = t if isinstance(t, Registered) else Registered(name, lambda params, _t=t: _t(), description=doc)
    return out


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}
