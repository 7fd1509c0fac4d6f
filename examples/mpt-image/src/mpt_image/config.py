"""Config sections of the image modality (``data:`` and ``tokenizer:`` in a recipe).

Pixel normalisation (``mean``/``std``) lives in ``tokenizer:``, not ``data:``: the tokenizer is
what the encoder card stores and :func:`mpt.load_encoder` rebuilds, so the statistics travel with
the weights and a user feeds the loaded encoder the same raw ``[0, 1]`` pixels the dataset gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpt.config import bounded


@dataclass
class ImageDataConfig:
    """How image files become training crops (MAE, He et al. CVPR 2022: RandomResizedCrop(224,
    scale=(0.2, 1.0)) + horizontal flip; ``main_pretrain.py``).

    ``channels``: None keeps each file's channel count (all files must agree with the first one);
    1, 2, 3 or 4 converts every image to L, LA, RGB or RGBA (what torchvision's ``ImageFolder``
    does with ``convert("RGB")``). The train split gets a random resized crop (``augment``) and a
    horizontal flip (``flip``); any other split the central ``crop_pct`` of the shorter side,
    resized to ``size`` (ImageNet evaluation: Resize(256) + CenterCrop(224), crop_pct 0.875).
    """

    size: int = bounded(224, ge=1)  # square crop side in pixels; a multiple of tokenizer.patch
    channels: int | None = bounded(None, ge=1, le=4)  # None = keep the files' own channel count
    augment: bool = True  # RandomResizedCrop on the train split (off: the eval crop)
    scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop area range (MAE: 0.2-1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect (width / height) range
    flip: bool = True  # random horizontal flip on the train split
    crop_pct: float = bounded(0.875, gt=0, le=1)  # eval crop: this share of the shorter side
    repeats: int = bounded(1, ge=1)  # each image appears this many times per epoch


@dataclass
class ImageTokenizerConfig:
    """ViT patches (Dosovitskiy et al. ICLR 2021; MAE ``PatchEmbed``): ``patch`` × ``patch``
    pixels of all ``channels`` per token, after per-channel ``(x - mean) / std``.

    ``channels`` fixes the patch embedding's weights (it is in the encoder card); the images must
    have that many channels (see ``data.channels``). ``mean``/``std`` (one value per channel) default
    to the ImageNet statistics for 3 channels and to 0.5 / 0.25 per channel otherwise.
    """

    patch: int = bounded(16, ge=1)
    channels: int = bounded(3, ge=1)
    mean: list[float] | None = None
    std: list[float] | None = None
