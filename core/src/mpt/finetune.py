"""Fine-tuning and linear probing of a pretrained encoder for classification (MAE's recipe).

What MAE's ``main_finetune.py`` does (He et al. 2022, facebookresearch/mae), for any modality:

* a linear head on the pooled features, weights ``trunc_normal_(std=2e-5)``, bias 0 (``main_finetune.py``),
  after a parameter-free BatchNorm (MAE ``main_linprobe.py``; ``head_norm="layer"`` is its fine-tuning ``fc_norm``);
* layer-wise learning-rate decay (BEiT, Bao et al. 2022; MAE ``util/lr_decay.py``): block ``i`` of
  ``L`` learns at ``lr * layer_decay ** (L - i)``, the tokenizer at ``lr * layer_decay ** (L + 1)``;
* stochastic depth rising linearly to ``drop_path`` over the blocks (timm's rule);
* AdamW, no weight decay on biases, norms, position tables and the CLS token (:mod:`mpt.optim`);
* a per-step linear warm-up then half-cycle cosine (:func:`mpt.optim.lr_at`, MAE ``util/lr_sched.py``);
* cross-entropy with label smoothing 0.1 (MAE's ``--smoothing``; its mixup/cutmix/RandAugment are not here).

``freeze_encoder=True`` trains the head alone on frozen features: linear probing with the same loop.
::

    encoder = mpt.load_encoder("runs/ts/encoder")
    result = finetune(encoder, train, test, num_classes=4, collate=modality.collate, epochs=30)
    result.history[-1]  # {"epoch": 30, "train_loss": …, "accuracy": …, "balanced_accuracy": …}
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Literal, cast

import torch
from accelerate import Accelerator
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mpt.backbone import Backbone
from mpt.contract import Batch, Sample, SampleDataset, collate_samples
from mpt.errors import ConfigError, DataError
from mpt.features import check_pool, data_config, open_dataset, pool_output
from mpt.loop import batches, make_accelerator, open_loader, optimize, set_lr, step_seed
from mpt.optim import lr_at, param_groups

__all__ = ["Classifier", "FinetuneResult", "finetune", "finetune_from_path", "layer_decay_groups",
           "set_drop_path"]


class Classifier(nn.Module):
    """A pretrained encoder plus a linear head: raw batch → logits ``[B, num_classes]``.

    ``pool="mean"`` averages the token features (padding excluded; MAE's ``global_pool``, its
    fine-tuning default), ``"cls"`` takes the CLS token (the encoder must have one); the features
    are those after the encoder's final LayerNorm. ``head_norm`` normalises the pooled vector before
    the head: "batch" = ``BatchNorm1d(affine=False)`` (MAE's linear probe; here the default for both,
    as it trains much faster on features whose class differences are small next to their common
    part), "layer" = a LayerNorm (MAE's fine-tuning ``fc_norm``), "none". ``head_dropout`` is dropout
    before the head.
    """

    def __init__(self, encoder: Backbone, num_classes: int, *, pool: Literal["mean", "cls"] = "mean",
                 head_norm: Literal["batch", "layer", "none"] = "batch", head_dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError("num_classes", f"a classifier needs at least 2 classes, got {num_classes}")
        check_pool(encoder, pool)  # "cls" needs an encoder pretrained with a CLS token
        if pool not in ("mean", "cls"):
            raise ConfigError("pool", f"a classifier pools with mean or cls, got {pool!r}")
        self.encoder, self.pool = encoder, pool
        if head_norm not in ("batch", "layer", "none"):
            raise ConfigError("head_norm", f"{head_norm!r} is not allowed; choose batch, layer or none")
        norms = {"batch": lambda: nn.BatchNorm1d(encoder.dim, affine=False, eps=1e-6),  # MAE main_linprobe.py
                 "layer": lambda: nn.LayerNorm(encoder.dim), "none": nn.Identity}  # layer: MAE's fc_norm
        self.norm: nn.Module = norms[head_norm]()
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(encoder.dim, num_classes)
        trunc_normal_(self.head.weight, std=2e-5)  # MAE main_finetune.py: "manually initialize fc layer"
        nn.init.zeros_(self.head.bias)

    augment: Callable[[Batch], Batch] | None = None  # training-time augmentation (set by finetune per step)

    def forward(self, batch: Batch | Tensor) -> Tensor:
        augment = self.augment if self.training else None
        return self.head(self.dropout(self.norm(pool_output(self.encoder, batch, self.pool, augment))))


def set_drop_path(encoder: Backbone, rate: float) -> None:
    """Stochastic depth (Huang et al. 2016) at ``rate * i / (L - 1)`` for block ``i`` of ``L``
    (timm's ``linspace(0, rate, depth)``), replacing the blocks' ``drop_path1``/``drop_path2``."""
    if not 0 <= rate < 1:
        raise ConfigError("drop_path", f"must be in [0, 1), got {rate}")
    blocks = encoder.encoder.blocks
    for block, r in zip(blocks, torch.linspace(0, rate, len(blocks)).tolist(), strict=True):
        for name in ("drop_path1", "drop_path2"):  # a new module is in train mode: take the block's mode
            setattr(block, name, (DropPath(r) if r > 0 else nn.Identity()).train(block.training))


def layer_id(name: str, depth: int) -> int:
    """BEiT/MAE layer of a :class:`Classifier` parameter: 0 = tokenizer and CLS token,
    ``i + 1`` = block ``i``, ``depth + 1`` = final norm and head (MAE ``get_layer_id_for_vit``)."""
    if name.startswith("encoder.tokenizer.") or name == "encoder.encoder.cls_token":
        return 0
    if name.startswith("encoder.encoder.blocks."):
        return int(name.split(".")[3]) + 1
    return depth + 1


def layer_decay_groups(model: Classifier, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups with layer-wise LR decay (BEiT; MAE ``param_groups_lrd``).

    One group per (layer, decay or not); each carries ``lr_scale = layer_decay ** (L + 1 - layer)``
    and starts at ``lr * lr_scale``. Weight decay follows :func:`mpt.optim.param_groups` (none on
    1-D parameters, CLS/mask tokens, learned position tables).
    Frozen parameters are left out.
    """
    depth = len(model.encoder.encoder.blocks)
    no_decay = {id(p) for p in param_groups(model, weight_decay)[1]["params"]}
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer, skip = layer_id(name, depth), id(p) in no_decay
        scale = layer_decay ** (depth + 1 - layer)
        group = groups.setdefault((layer, skip), {
            "name": f"layer{layer}_{'no_decay' if skip else 'decay'}", "params": [],
            "weight_decay": 0.0 if skip else weight_decay, "lr_scale": scale, "lr": lr * scale})
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


@dataclass
class FinetuneResult:
    """``model``: the fine-tuned :class:`Classifier` (eval mode, CPU or the training device);
    ``history``: one dict per epoch (``epoch``, ``train_loss``, ``lr`` and, with eval data,
    ``eval_loss``, ``accuracy``, ``balanced_accuracy``); ``best_accuracy``: the highest eval accuracy
    of any epoch (MAE's "Max accuracy" — chosen on the eval data, so optimistic: quote the last)."""

    model: Classifier
    history: list[dict[str, float]]
    best_accuracy: float = float("nan")
    classes: list[str] = field(default_factory=list)


class LabelledCollate:
    """``samples`` → the modality's :class:`~mpt.contract.Batch` with ``labels`` ``[B]``; a missing or
    out-of-range label is a DataError naming the sample."""

    def __init__(self, collate: Callable[[list[Sample]], Batch] | None, num_classes: int) -> None:
        self.collate, self.num_classes = collate or collate_samples, num_classes

    def __call__(self, samples: list[Sample]) -> Batch:
        for s in samples:
            if s.label is None:
                raise DataError(s.source or "dataset", "sample without a class label; fine-tuning needs labelled "
                                                       "data (class folders, or a format with labels)")
            if not 0 <= s.label < self.num_classes:
                raise DataError(s.source or "dataset", f"label {s.label} outside 0..{self.num_classes - 1} "
                                                       f"(num_classes={self.num_classes})")
        batch = self.collate(samples)
        batch.labels = torch.tensor([int(cast(int, s.label)) for s in samples])
        return batch


def finetune(encoder: Backbone, train_data: SampleDataset, eval_data: SampleDataset | None = None, *,
             num_classes: int, collate: Callable[[list[Sample]], Batch] | None = None, epochs: int = 50,
             batch_size: int = 32, lr: float = 1e-3, min_lr: float = 1e-6, layer_decay: float = 0.75,
             drop_path: float = 0.1, weight_decay: float = 0.05, warmup_epochs: float = 5.0,
             label_smoothing: float = 0.1, grad_clip: float | None = None, pool: Literal["mean", "cls"] = "mean",
             head_norm: Literal["batch", "layer", "none"] = "batch", head_dropout: float = 0.0,
             precision: Literal["no", "bf16"] = "no", seed: int = 0, freeze_encoder: bool = False,
             augment: Callable[[Batch, torch.Generator], Batch] | None = None,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune a copy of ``encoder`` with a linear head on labelled ``train_data``; evaluate on
    ``eval_data`` after every epoch. ``encoder`` itself is left unchanged.

    ``lr`` is the absolute peak learning rate (MAE takes a base ``blr`` and uses ``blr * batch / 256``:
    its ViT-B recipe, blr 5e-4 at batch 1024, is ``lr=2e-3``). Epochs are whole batches of a seeded
    permutation (``drop_last``, as MAE); the schedule is per step. ``collate`` is the modality's
    (``modality.collate``; default: stack the inputs). ``freeze_encoder`` trains only the head
    (linear probing; no drop path or layer decay then). ``augment(batch, generator)`` is the
    modality's training augmentation (``Modality.augment`` with its data config, as
    :func:`finetune_from_path` passes it), applied to normalised training batches only, drawn from the
    step's seed. Deterministic on CPU for a given ``seed``.
    """
    if precision not in ("no", "bf16"):
        raise ConfigError("precision", f"{precision!r} is not allowed; choose no or bf16")
    if epochs < 1:
        raise ConfigError("epochs", f"must be >= 1, got {epochs}")
    if batch_size < (2 if head_norm == "batch" else 1):
        raise ConfigError("batch_size", f"{batch_size} is too small (head_norm='batch' needs >= 2)")
    classes = list(getattr(train_data, "classes", None) or [])
    if classes and len(classes) != num_classes:
        raise ConfigError("num_classes", f"{num_classes}, but the training data has {len(classes)} classes "
                                         f"({', '.join(classes[:10])})")
    if len(cast(Sized, train_data)) and train_data[0].label is None:
        raise DataError(train_data[0].source or "training data", "no class labels; fine-tuning needs labelled "
                                                                  "data (class folders, or a format with labels)")
    accelerator = make_accelerator(precision)
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder).train(), num_classes, pool=pool, head_norm=head_norm,
                       head_dropout=head_dropout)
    if freeze_encoder:
        model.encoder.requires_grad_(False)
    else:
        set_drop_path(model.encoder, drop_path)
    optimizer = torch.optim.AdamW(layer_decay_groups(model, lr, weight_decay, 1.0 if freeze_encoder else layer_decay),
                                  lr=lr)
    labelled = LabelledCollate(collate, num_classes)
    data = open_loader(train_data, accelerator, batch_size, labelled, seed, what="training data")
    steps_per_epoch = cast(int, data.batches_per_epoch)
    eval_loader = None if eval_data is None else accelerator.prepare(
        DataLoader(cast(Dataset, eval_data), batch_size, collate_fn=labelled))
    model, optimizer = accelerator.prepare(model, optimizer)
    net = cast(Classifier, accelerator.unwrap_model(model))
    net.encoder.encoder.configure_attention(accelerator.device, precision)
    total, warmup = epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    history: list[dict[str, float]] = []
    bar = tqdm(total=total, desc="fine-tune" if not freeze_encoder else "linear probe", unit="step", file=sys.stderr,
               disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    losses: list[float] = []
    step = 0
    model.train()
    for epoch, batch in batches(data, 0, seed):
        if freeze_encoder:
            net.encoder.eval()  # frozen features: no drop path, no dropout
        base_lr = set_lr(optimizer, lr_at(step, total, warmup, lr, min_lr))
        if augment is not None:  # the modality's training augmentation, drawn from the step's seed
            gen = torch.Generator().manual_seed(step_seed(seed, step, 0, accelerator.process_index))
            net.augment = lambda b, g=gen: augment(b, g)
        loss = criterion(model(batch).float(), batch.labels)
        optimize(accelerator, model, loss, optimizer, grad_clip)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        if step % steps_per_epoch:
            continue
        record: dict[str, float] = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses), "lr": base_lr}
        losses = []
        if eval_loader is not None:
            record.update(evaluate(model, eval_loader, accelerator))
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['accuracy']:.3f}")
            model.train()
        history.append(record)
        if step >= total:
            break
    bar.close()
    net.augment = None
    net.eval()
    best = max((h["accuracy"] for h in history), default=float("nan")) if eval_loader is not None else float("nan")
    return FinetuneResult(model=net, history=history, best_accuracy=best, classes=classes)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
    """Cross-entropy, accuracy and balanced accuracy (mean recall over the classes present)."""
    model.eval()
    logits_all, labels_all = [], []
    for batch in loader:
        logits = model(batch).float()
        logits, y = accelerator.gather_for_metrics((logits, batch.labels))
        logits_all.append(logits.cpu())
        labels_all.append(y.cpu())
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    pred = logits.argmax(-1)
    recall = [(pred[labels == c] == c).float().mean() for c in labels.unique()]
    return {"eval_loss": nn.functional.cross_entropy(logits, labels).item(),
            "accuracy": (pred == labels).float().mean().item(),
            "balanced_accuracy": torch.stack(recall).mean().item()}


class Relabelled(Dataset):
    """``data`` with its labels mapped from its ``classes`` to the (super)set ``to`` by name."""

    def __init__(self, data: SampleDataset, classes: Sequence[str], to: Sequence[str]) -> None:
        self.data, self.index = data, [list(to).index(c) for c in classes]

    def __len__(self) -> int:
        return len(cast(Sized, self.data))

    def __getitem__(self, i: int) -> Sample:
        s = self.data[i]
        return s if s.label is None else replace(s, label=self.index[s.label])


def finetune_from_path(encoder_path: str | PathLike[str], data: str | PathLike[str] | None,
                       eval_data: str | PathLike[str] | None, *, data_sets: Sequence[str] = (),
                       eval_data_sets: Sequence[str] | None = None, num_classes: int | None = None,
                       **options: Any) -> FinetuneResult:
    """Load the encoder at ``encoder_path``, open ``data`` (its "train" split, augmented; None = the
    modality's demo data) and ``eval_data`` (its "test" split; None = no evaluation) as the encoder
    card says (:func:`mpt.features.open_dataset`: the card's data settings with ``data_sets``
    overrides such as ``"data.repeats=10"``; ``repeats`` is 1 unless set; ``eval_data_sets`` for the
    evaluation data, default the same), and :func:`finetune`.

    One folder may be both ``data`` and ``eval_data`` when the plugin splits it into training and
    held-out files (the time-series plugin's ``*_TRAIN`` / ``*_TEST`` layout).
    Evaluation classes are matched to the training classes by name.
    ``options`` go to :func:`finetune`.
    """
    from mpt.pretrained import load_encoder, read_card

    card = read_card(Path(encoder_path))
    encoder = load_encoder(encoder_path)
    train, modality = open_dataset(card, None if data is None else Path(data), "train", data_sets)
    train_cfg = data_config(card, modality, data_sets)
    where = Path(data) if data is not None else "demo data"
    classes = list(getattr(train, "classes", None) or [])
    if not classes:
        raise DataError(where, "no class labels found; fine-tuning needs labelled data: files in <class>/ "
                               "folders, or a format the plugin reads labels from")
    test: SampleDataset | None = None
    if eval_data is not None:
        test, _ = open_dataset(card, Path(eval_data), "test", data_sets if eval_data_sets is None else eval_data_sets)
        eval_classes = list(getattr(test, "classes", None) or [])
        unknown = sorted(set(eval_classes) - set(classes))
        if unknown or not eval_classes:
            raise DataError(Path(eval_data), f"evaluation classes {unknown or 'none'} are not among the training "
                                             f"classes ({', '.join(classes[:10])})")
        if eval_classes != classes:
            test = Relabelled(test, eval_classes, classes)
    return finetune(encoder, train, test, num_classes=len(classes) if num_classes is None else num_classes,
                    collate=modality.collate, augment=lambda b, g: modality.augment(b, train_cfg, g), **options)
