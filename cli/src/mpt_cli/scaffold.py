"""``mpt plugin new NAME``: a new, installable modality plugin package from the shipped template.

The template (``mpt_cli/template/``, package data of mpt-cli) mirrors the generated tree: every
file ends in ``.tmpl`` (so neither pytest nor ruff treats it as code of mpt-cli), a folder named
``__package__`` becomes ``mpt_NAME``, and ``$name``-style placeholders are filled in with
:class:`string.Template` (no clash with Python's braces). A small synthetic demo data set is
written at scaffold time, so the package trains and passes its tests as generated.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from pathlib import Path
from string import Template

from mpt.errors import MptError

TEMPLATE = Path(__file__).resolve().with_name("template")
SUFFIX = ".tmpl"
PACKAGE_DIR = "__package__"
RENAMES = {"gitignore": ".gitignore"}  # dotfiles are not package data by default
NAME = re.compile(r"[a-z][a-z0-9_]*")
# Class names the generated modality module imports: a modality class of that name would shadow them.
RESERVED = ("Figure", "Modality", "Path")


class ScaffoldError(MptError):
    """The plugin cannot be created (bad name, name taken, folder exists); nothing was written."""


def camel_case(name: str) -> str:
    """``"eeg_signal"`` → ``"EegSignal"``: the modality class name."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def placeholders(name: str) -> dict[str, str]:
    """What ``$name``, ``$package``, ``$dist``, ``$camel`` and ``$title`` stand for in the template."""
    return {"name": name, "package": f"mpt_{name}", "dist": f"mpt-{name}", "camel": camel_case(name),
            "title": name.replace("_", " ").capitalize()}


def check_name(name: str, installed: list[str]) -> None:
    """Raise ScaffoldError unless ``name`` can be a new modality (``installed``: modality names)."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(f"invalid plugin name '{name}': use a lowercase Python identifier "
                            "([a-z][a-z0-9_]*), e.g. 'wave' or 'eeg_signal'")
    if camel_case(name) in RESERVED:
        raise ScaffoldError(f"plugin name '{name}' would make a modality class {camel_case(name)} that clashes "
                            "with a name the generated code imports; choose another name")
    if name in installed:
        raise ScaffoldError(f"a modality named '{name}' is already installed (installed: {', '.join(installed)}); "
                            "choose another name")
    if importlib.util.find_spec(f"mpt_{name}") is not None:
        raise ScaffoldError(f"a Python package named mpt_{name} is already importable; choose another name")


def render(text: str, values: dict[str, str], source: Path) -> str:
    try:
        return Template(text).substitute(values)
    except (KeyError, ValueError) as exc:  # a template bug, not a user error
        raise RuntimeError(f"template {source}: bad placeholder {exc}") from exc


def write_demo_data(folder: Path, files: int = 12, channels: int = 2, length: int = 512, seed: int = 0) -> list[Path]:
    """``files`` ``.npy`` files of ``float32 [channels, length]`` noisy sine mixtures (fixed seed).

    Channel 0 is a sum of two sines; channel 1 is a phase-shifted copy of its slower sine under a
    slow envelope, so a masked model can learn within- and across-channel structure.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(files):
        f1, f2 = rng.uniform(2, 8), rng.uniform(10, 30)
        p1, p2, shift = rng.uniform(0, 2 * np.pi, size=3)
        x = np.empty((channels, length))
        x[0] = np.sin(2 * np.pi * f1 * t + p1) + 0.5 * np.sin(2 * np.pi * f2 * t + p2)
        for c in range(1, channels):
            envelope = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
            x[c] = envelope * np.sin(2 * np.pi * f1 * t + p1 + shift + c)
        x += 0.1 * rng.standard_normal(x.shape)
        path = folder / f"signal_{i:02d}.npy"
        np.save(path, x.astype(np.float32))
        out.append(path)
    return out


def scaffold(name: str, parent: Path, installed: list[str]) -> tuple[Path, list[Path]]:
    """Write the plugin ``mpt-NAME`` under ``parent`` → (its folder, the files written, relative to it).

    Never overwrites: an existing target folder is a ScaffoldError. The tree is built in a temporary
    sibling folder and renamed into place, so a failure leaves nothing behind.
    """
    check_name(name, installed)
    values = placeholders(name)
    target = parent / values["dist"]
    if target.exists() or target.is_symlink():
        raise ScaffoldError(f"{target} already exists; nothing was written (choose another name or --dir)")
    if parent.exists() and not parent.is_dir():
        raise ScaffoldError(f"--dir {parent} is not a folder")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{values['dist']}-", dir=parent))
    try:
        written = []
        for source in sorted(TEMPLATE.rglob(f"*{SUFFIX}")):
            rel = source.relative_to(TEMPLATE)
            parts = [values["package"] if p == PACKAGE_DIR else p for p in rel.parts]
            parts[-1] = RENAMES.get(parts[-1][: -len(SUFFIX)], parts[-1][: -len(SUFFIX)])
            dest = tmp.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(render(source.read_text(encoding="utf-8"), values, source), encoding="utf-8")
            written.append(dest)
        written += write_demo_data(tmp / "src" / values["package"] / "data")
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, sorted(p.relative_to(tmp) for p in written)
