"""The audio dataset: segments of long files, short files, resampling, augmentation, labels, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mpt
from mpt.errors import DataError
from mpt_audio.config import AudioDataConfig
from mpt_audio.dataset import AudioDataset
from mpt_audio.modality import DEMO_DATA


def tone(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0, subtype: str = "PCM_16") -> Path:
    """A sine whose amplitude ramps up over the file (so positions can be read back from levels)."""
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.5 * np.sin(2 * np.pi * freq * t) * (t / max(seconds, 1e-9)), rate, subtype=subtype)
    return path


def cfg(**kw: object) -> AudioDataConfig:
    return AudioDataConfig(**{"seconds": 1.0, **kw})  # type: ignore[arg-type]


def test_long_files_are_cut_into_segments_that_reach_the_end(tmp_path: Path) -> None:
    path = tone(tmp_path / "long.wav", 3.5)
    ds = AudioDataset(path, "probe", cfg(), progress=False)
    assert len(ds) == 4 and [ds.window(i)[1] for i in range(4)] == [0, 16000, 32000, 40000]  # last ends at 3.5 s
    assert all(ds[i].input.shape == (16000,) for i in range(4))
    whole = torch.from_numpy(sf.read(path, dtype="float32")[0])
    torch.testing.assert_close(ds[3].input, whole[40000:])
    half = AudioDataset(path, "probe", cfg(hop=0.5), progress=False)
    assert len(half) == 6 and half.window(1)[1] == 8000
    jittered = AudioDataset(path, "train", cfg(), progress=False)
    starts = set()
    for seed in range(6):
        jittered.reseed(seed)
        starts.add(jittered.window(0)[1])
    assert len(starts) > 1 and all(0 <= s < 16000 for s in starts)  # within the first hop
    assert jittered.window(3)[1] == 40000  # the last segment stays at the end


def test_short_files_are_one_shorter_sample_and_the_batch_pads_them(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav", 0.4)
    tone(tmp_path / "b.wav", 1.5)
    ds = AudioDataset(tmp_path, "probe", cfg(), progress=False)
    samples = [ds[i] for i in range(len(ds))]
    assert [s.input.shape[0] for s in samples] == [6400, 16000, 16000]
    batch = mpt.get_modality("audio").collate(samples)
    assert batch.tensor.shape == (3, 16000) and batch.meta["length"].tolist() == [6400, 16000, 16000]
    assert batch.meta["rate"].tolist() == [16000] * 3


def test_every_rate_is_resampled_to_the_data_rate(tmp_path: Path) -> None:
    for rate in (8000, 44100, 48000, 96000):
        path = tone(tmp_path / f"r{rate}.flac", 1.0, rate=rate, freq=1000.0, subtype="PCM_24")
        x = AudioDataset(path, "probe", cfg(), progress=False)[0].input.numpy()
        assert x.shape == (16000,)
        spectrum = np.abs(np.fft.rfft(x[8000:]))  # the louder half
        assert abs(np.argmax(spectrum) * 16000 / 8000 - 1000) <= 2, rate


def test_roll_and_gain_augmentation_is_seeded(tmp_path: Path) -> None:
    path = tone(tmp_path / "a.wav", 1.0)
    plain = AudioDataset(path, "train", cfg(), progress=False)[0].input
    ds = AudioDataset(path, "train", cfg(roll_mag=True), progress=False)
    rolled = ds[0].input
    assert not torch.equal(rolled, plain) and torch.equal(rolled, ds[0].input)
    ratio = float(rolled.abs().max() / plain.abs().max())
    assert 0.5 <= ratio <= 1.5  # Beta(10, 10) + 0.5


def test_labels_bad_files_and_too_short_files(tmp_path: Path) -> None:
    tone(tmp_path / "bass" / "a.wav", 1.0)
    tone(tmp_path / "drum" / "b.flac", 1.0)
    tone(tmp_path / "drum" / "click.wav", 0.05)
    (tmp_path / "drum" / "broken.ogg").write_bytes(b"OggS not really")
    with pytest.raises(DataError, match="broken.ogg"):
        AudioDataset(tmp_path, "train", cfg(), progress=False)
    ds = AudioDataset(tmp_path, "train", cfg(), skip_bad_files=True, progress=False)
    assert ds.classes == ["bass", "drum"] and [ds[i].label for i in range(len(ds))] == [0, 1]
    reasons = {Path(p).name: r for p, r in ds.skipped}
    assert set(reasons) == {"broken.ogg", "click.wav"} and "shorter than data.min_seconds" in reasons["click.wav"]
    # a file whose samples turn out NaN when read: the item's DataError names it (the loader stops or skips)
    nan = tmp_path / "drum" / "nan.wav"
    sf.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    late = AudioDataset(tmp_path, "train", cfg(), skip_bad_files=True, progress=False)
    index = next(i for i in range(len(late)) if late.sources[late.window(i)[0]].endswith("nan.wav"))
    with pytest.raises(DataError, match="nan.wav"):
        late[index]


def test_demo_data_and_the_modality() -> None:
    modality = mpt.get_modality("audio")
    assert modality.extensions == (".wav", ".flac", ".ogg", ".mp3")
    ds = modality.dataset(None, "train", AudioDataConfig(seconds=2.0))
    assert sorted(Path(s).name for s in ds.sources) == sorted(p.name for p in DEMO_DATA.glob("*.flac"))
    assert len(ds.sources) == 8 and (DEMO_DATA / "ATTRIBUTION.md").is_file()
    x = ds[0].input
    assert x.dtype == torch.float32 and x.ndim == 1 and float(x.abs().max()) <= 1.0
    assert modality.downstream_data(AudioDataConfig(repeats=8)).repeats == 1
