"""The ``medical`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mpt.contract import PLUGIN_API, Adaptation, Figure, Modality, SampleDataset, Tokenizer
from mpt.errors import ConfigError
from mpt_medical.config import MedicalDataConfig, MedicalTokenizerConfig
from mpt_medical.io import EXTENSIONS
from mpt_medical.plan import triple

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"
ANISOTROPY = 3.0  # largest / smallest voxel side above which guidance is printed
FIT_SAMPLES = 64  # crops read to fit CT statistics
FIT_VOXELS = 20000  # foreground voxels kept per crop for the CT percentiles


class Medical(Modality):
    """CT and MRI volumes (NIfTI through nibabel): RAS, a target spacing, CT/MRI intensity policies,
    random 3-D crops; 3-D patch tokens. The preprocessing plan is the tokenizer config (completed by
    :meth:`fit`), so the encoder card holds it and a loaded encoder replays it on raw volumes."""

    name = "medical"
    description = ("CT / MRI volumes (.nii, .nii.gz via nibabel): RAS, target spacing, CT window or MRI "
                   "foreground z-score; 3-D patches; the preprocessing plan replayed by load_encoder")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = MedicalDataConfig
    tokenizer_config = MedicalTokenizerConfig
    recipe_dir = RECIPES
    extensions = EXTENSIONS

    def dataset(self, path: Path | None, split: str, config: MedicalDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - a MedicalDataset
        from mpt_medical.dataset import MedicalDataset

        return MedicalDataset(DEMO_DATA if path is None else path, split, config, skip_bad_files=skip_bad_files)

    def adapt(self, dataset: SampleDataset, config: Any) -> list[Adaptation]:
        """Guidance when the target spacing does not fit the data (nnU-Net#2701): resampling by more
        than 2× from the volumes' median spacing, or strongly anisotropic voxels kept as they are."""
        import numpy as np

        infos = getattr(dataset, "info", [])
        if not infos:
            return []
        median = np.median([i.spacing for i in infos], axis=0)
        target = getattr(dataset, "spacing", None)
        out = []
        if target is not None:
            factor = np.asarray(target) / median
            if (factor > 2).any() or (factor < 0.5).any():
                out.append(Adaptation("data.spacing", None, (
                    f"the volumes' median voxel is {np.round(median, 3).tolist()} mm and the plan resamples to "
                    f"{list(target)} mm (×{np.round(1 / factor, 2).tolist()} voxels per axis); data.spacing=median "
                    "keeps their resolution")))
        elif median.max() / median.min() > ANISOTROPY:
            out.append(Adaptation("tokenizer.patch", None, (
                f"voxels of {np.round(median, 3).tolist()} mm are anisotropic and kept (data.spacing none): a patch "
                "such as [16, 16, 4] covers a similar extent in mm on every axis; positions are in mm already")))
        return out

    def fit(self, dataset: SampleDataset, config: MedicalTokenizerConfig,
            progress: bool = True) -> MedicalTokenizerConfig:
        """The plan completed from the training data: the data config's orientation, resolved
        spacing (``median`` → numbers), the reference spacing of positions (the target spacing, or the
        volumes' median when they keep their own; a recipe's value is kept), the crop and the channel
        count; for CT the window (0.5 / 99.5 percentiles of the foreground) and mean/std, unless given.
        A tokenizer value that contradicts the data is a ConfigError."""
        data: MedicalDataConfig = dataset.config  # type: ignore[attr-defined]
        spacing = None if dataset.spacing is None else [float(v) for v in dataset.spacing]  # type: ignore[attr-defined]
        plan = {"orientation": data.orientation, "spacing": spacing,
                "reference_spacing": config.reference_spacing or [float(v) for v in dataset.reference],  # type: ignore[attr-defined]
                "crop": list(dataset.crop), "channels": dataset.channels}  # type: ignore[attr-defined]
        defaults = MedicalTokenizerConfig()
        for key, value in plan.items():
            mine = getattr(config, key)
            if key in ("crop", "spacing") and mine is not None:  # one number or three
                mine = list(triple(mine, f"tokenizer.{key}", int if key == "crop" else float))
            if mine != getattr(defaults, key) and mine != value and key != "reference_spacing":
                where = "data.layout_4d" if key == "channels" else f"data.{key}"
                raise ConfigError(f"tokenizer.{key}", f"{mine}, but the data config gives {value}: the plan's geometry "
                                                      f"comes from the data config — set {where}, and leave "
                                                      f"tokenizer.{key} out (fit fills it; a reused config.yaml "
                                                      "carries the old value)")
        config = dataclasses.replace(config, **plan)
        if config.intensity != "ct" or (config.window is not None and config.mean is not None and config.std):
            return config
        return fit_ct(dataset, config, progress)

    def tokenizer(self, config: MedicalTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_medical.tokenizer import MedicalTokenizer

        return MedicalTokenizer(config, dim)

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_medical.figures import visualize

        visualize(figure, path)


def fit_ct(dataset: SampleDataset, config: MedicalTokenizerConfig, progress: bool = True) -> MedicalTokenizerConfig:
    """nnU-Net's CTNormalization statistics from up to FIT_SAMPLES training crops: the window (0.5 /
    99.5 percentiles of the foreground voxels, unless given), then mean and std of the clipped
    foreground voxels."""
    import sys

    import torch
    from tqdm.auto import tqdm

    n = min(len(dataset), FIT_SAMPLES)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    values = []
    for i in tqdm(range(n), desc="fitting CT statistics", unit="crop", file=sys.stderr, disable=not progress,
                  leave=False):
        x = torch.as_tensor(dataset[i].input).flatten()
        x = x[~x.isnan()]
        x = x[x > config.threshold] if config.foreground == "above" else x
        if x.numel() > FIT_VOXELS:
            x = x[torch.randperm(x.numel(), generator=gen)[:FIT_VOXELS]]
        values.append(x.double())
    v = torch.cat(values) if values else torch.zeros(0)
    if v.numel() < 2:
        raise ConfigError("tokenizer.threshold", f"no foreground voxel above {config.threshold} in {n} training crops: "
                                                 "is this CT in Hounsfield units? (or set tokenizer.intensity=mri)")
    window = config.window or [float(torch.quantile(v, 0.005)), float(torch.quantile(v, 0.995))]
    clipped = v.clamp(window[0], window[1])
    std = float(clipped.std()) if float(clipped.std()) > 1e-8 else 1.0
    return dataclasses.replace(config, window=[float(w) for w in window],
                               mean=config.mean if config.mean is not None else float(clipped.mean()),
                               std=config.std or std)
