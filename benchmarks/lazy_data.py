"""Peak RSS of opening a large folder as a training dataset (issue 9, item 6: lazy data).

Generates ``--size-gb`` of ``.npy`` time series (``[channels, steps]`` float32 files of ``--file-mb``)
under ``--dir`` (kept between runs), then in a fresh subprocess opens it with the modality's
``dataset()`` and reads one item, and prints one JSON line: the peak RSS before, after
construction and after the first item, and the time each took. Run it with another checkout on
``PYTHONPATH`` to compare versions of the same code on the same folder::

    .venv/bin/python benchmarks/lazy_data.py --dir /tmp/mpt-lazy --size-gb 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time
import mpt
from mpt.config import build_config
t0 = time.perf_counter()
modality = mpt.get_modality("timeseries")
cfg = build_config(modality, None, None, ["data.context=512"])
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t1 = time.perf_counter()
ds = modality.dataset(__import__("pathlib").Path(sys.argv[1]), "train", cfg.data)
t2 = time.perf_counter()
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
item = ds[len(ds) // 2]
t3 = time.perf_counter()
rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"windows": len(ds), "rss_base_mib": rss0, "rss_after_open_mib": rss1, "rss_after_item_mib": rss2,
                  "open_s": t2 - t1, "first_item_s": t3 - t2, "item_shape": list(item.input.shape)}))
"""


def generate(folder: Path, size_gb: float, file_mb: float, channels: int) -> tuple[int, float]:
    folder.mkdir(parents=True, exist_ok=True)
    steps = int(file_mb * 2**20 / 4 / channels)
    n = max(1, round(size_gb * 1024 / file_mb))
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"series{i:05d}.npy"
        if not path.exists() or path.stat().st_size < steps * channels * 4:
            np.save(path, rng.standard_normal((channels, steps), dtype=np.float32))
    total = sum(p.stat().st_size for p in folder.glob("*.npy")) / 2**30
    return n, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mpt-lazy-data"))
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--file-mb", type=float, default=16.0)
    ap.add_argument("--channels", type=int, default=8)
    args = ap.parse_args()
    files, total_gb = generate(args.dir, args.size_gb, args.file_mb, args.channels)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.dir)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(out.returncode)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    import mpt

    print(json.dumps({"bench": "lazy_data", "modality": "timeseries", "files": files, "data_gib": round(total_gb, 3),
                      "mpt_core": getattr(mpt, "__file__", "?"), "wall_s": time.perf_counter() - t0, **record}))


if __name__ == "__main__":
    main()
