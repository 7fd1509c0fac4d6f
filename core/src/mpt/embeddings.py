"""Writing embeddings (``mpt embed``): ``.npy`` with a sources sidecar, or ``.parquet``."""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from mpt.errors import MptError
from mpt.features import Features

EMBED_FORMATS = (".npy", ".parquet")


def sources_path(out: str | PathLike[str]) -> Path:
    """The sidecar of an ``.npy`` embedding file: ``FILE.sources.txt`` (``emb.npy.sources.txt``)."""
    out = Path(out)
    return out.with_name(out.name + ".sources.txt")


def check_embed_target(out: str | PathLike[str]) -> None:
    """Fail early (before any feature is computed) on an unsupported output format or a missing pyarrow."""
    suffix = Path(out).suffix.lower()
    if suffix not in EMBED_FORMATS:
        raise MptError(f"{out}: the output must end in .npy or .parquet, got '{Path(out).suffix}'")
    if suffix == ".parquet":
        _pyarrow()


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MptError("writing .parquet needs pyarrow: pip install pyarrow or write .npy") from None
    return pa, pq


def write_embeddings(features: Features, out: str | PathLike[str],
                     metadata: dict[str, str] | None = None) -> list[Path]:
    """Write ``features`` to ``out`` and return the files written.

    ``.npy``: the ``float32 [N, D]`` matrix, plus ``FILE.sources.txt`` with one source per line in the
    same order. ``.parquet``: one row per sample with columns ``source`` (string), ``label`` (the class
    name, only when the data has labels) and ``embedding`` (a fixed-size list of D float32), with
    ``metadata`` in the schema's key-value metadata.
    """
    check_embed_target(out)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if any("\n" in s or "\r" in s for s in features.sources):
        warnings.warn("a source holds a line break; the sources sidecar will be misaligned", stacklevel=2)
    if out.suffix.lower() == ".npy":
        np.save(out, np.ascontiguousarray(features.x, dtype=np.float32))
        side = sources_path(out)
        side.write_text("".join(s + "\n" for s in features.sources), encoding="utf-8")
        return [out, side]
    pa, pq = _pyarrow()
    n, d = features.x.shape
    flat = pa.array(np.ascontiguousarray(features.x, dtype=np.float32).reshape(-1))
    columns = {"source": pa.array(features.sources, type=pa.string())}
    if features.labels is not None:
        columns["label"] = pa.array([features.classes[i] for i in features.labels.tolist()], type=pa.string())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, d) if d else pa.nulls(n)
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({str(k): str(v) for k, v in metadata.items()})
    pq.write_table(table, out)
    return [out]
