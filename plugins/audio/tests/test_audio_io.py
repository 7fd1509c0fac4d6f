"""Audio readers: sample scaling per format, mono mix-down, resampling, segment reads, every bad input."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mpt_audio.io as aio
from mpt.errors import DataError
from mpt_audio.fbank import fbank
from mpt_audio.io import AudioInfo, find_audio, is_silent, mp3_supported, probe, read_audio

ROOT = Path(__file__).resolve().parents[3]
SHARED_AUDIO = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "audio"


def tone(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """float64 ``[frames, channels]`` sine; channel c has amplitude ``amp / (c + 1)``."""
    t = np.arange(round(rate * seconds)) / rate
    return np.stack([amp / (c + 1) * np.sin(2 * np.pi * freq * t) for c in range(channels)], axis=1)


def write(path: Path, data: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def peak_hz(x: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(x.double() * torch.hann_window(len(x), dtype=torch.float64)).abs()
    return float(spectrum.argmax()) * rate / len(x)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("subtype", "scale"), [("PCM_16", 2**15), ("PCM_24", 2**23), ("PCM_32", 2**31)])
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_integer_pcm_is_divided_by_its_full_scale(tmp_path: Path, ext: str, subtype: str, scale: int) -> None:
    if ext == ".flac" and subtype == "PCM_32":
        pytest.skip("FLAC has no 32-bit PCM")
    ints = np.array([0, 1, -1, scale - 1, -scale, scale // 3, -(scale // 7)] * 100, dtype=np.int64)
    path = tmp_path / f"ints{ext}"
    sf.write(str(path), ints.astype(np.int32) * (2**31 // scale), 8000, subtype=subtype)  # int32 full scale in
    info = probe(path)
    assert info == AudioInfo(frames=700, rate=8000, channels=1, format=ext[1:].upper(), subtype=subtype)
    x = read_audio(path, info)
    assert x.dtype == torch.float32 and x.shape == (700,)
    np.testing.assert_array_equal(x.numpy(), (ints / scale).astype(np.float32))
    assert float(x.min()) == -1.0 and float(x.max()) <= 1.0  # (2**31 - 1) / 2**31 rounds to 1 in float32


def test_float_wav_is_read_as_stored(tmp_path: Path) -> None:
    data = np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32)
    path = write(tmp_path / "float.wav", data, 22050, "FLOAT")
    info = probe(path)
    assert (info.format, info.subtype, info.rate) == ("WAV", "FLOAT", 22050)
    np.testing.assert_array_equal(read_audio(path, info).numpy(), data)


def test_ogg_vorbis_decodes_close_to_the_original(tmp_path: Path) -> None:
    data = tone(16000, 1.0)[:, 0]
    path = write(tmp_path / "tone.ogg", data, 16000)
    info = probe(path)
    assert (info.format, info.subtype, info.frames) == ("OGG", "VORBIS", 16000)
    x = read_audio(path, info).double().numpy()
    assert np.corrcoef(x, data)[0, 1] > 0.999
    assert abs(peak_hz(torch.from_numpy(x), 16000) - 1000) <= 1


@pytest.mark.skipif(not mp3_supported(), reason="this libsndfile has no MP3 decoder")
def test_mp3_decodes_a_tone(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.mp3", tone(16000, 1.0), 16000)
    info = probe(path)
    assert (info.format, info.rate, info.frames) == ("MP3", 16000, 16000)
    x = read_audio(path, info)
    assert abs(peak_hz(x, 16000) - 1000) <= 1 and 0.4 < float(x.abs().max()) < 0.6


def test_mp3_without_a_decoder_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(b"ID3" + bytes(500))
    monkeypatch.setattr(sf, "available_formats", lambda: {"WAV": "WAV (Microsoft)"})
    with pytest.raises(DataError, match="cannot decode MP3") as err:
        probe(path)
    assert err.value.path == str(path)


def test_stereo_is_mixed_down_to_the_mean_of_its_channels(tmp_path: Path) -> None:
    data = tone(8000, 0.5, channels=2).astype(np.float32)
    path = write(tmp_path / "stereo.wav", data, 8000, "FLOAT")
    info = probe(path)
    assert info.channels == 2
    np.testing.assert_allclose(read_audio(path, info).numpy(), data.mean(axis=1), rtol=0, atol=1e-7)


def test_a_silent_file_is_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "silence.flac", np.zeros(16000), 16000)
    x = read_audio(path)
    assert is_silent(x) and not is_silent(x + 1e-4) and is_silent(x + 1e-4, threshold=1e-3)
    feats, _ = fbank(x[None], None, 16000)
    assert bool(torch.isfinite(feats).all())


# --------------------------------------------------------------------------- resampling and segments


@pytest.mark.parametrize("rate", [44100, 8000])
def test_resampling_to_16k_keeps_a_tone_frequency_and_amplitude(tmp_path: Path, rate: int) -> None:
    path = write(tmp_path / f"tone{rate}.wav", tone(rate, 1.0), rate, "FLOAT")
    x = read_audio(path, rate=16000)
    assert x.dtype == torch.float32 and x.shape == (16000,)
    bin_hz = 16000 / len(x)
    assert abs(peak_hz(x, 16000) - 1000) <= bin_hz
    middle = x[200:-200].double()
    assert abs(float(middle.abs().max()) - 0.5) < 0.005
    assert abs(float(middle.square().mean().sqrt()) * math.sqrt(2) - 0.5) < 0.005
    ideal = 0.5 * torch.sin(2 * math.pi * 1000 * torch.arange(16000, dtype=torch.float64) / 16000)
    assert float((x.double() - ideal)[200:-200].abs().max()) < 2e-3  # sample 0 stays sample 0: no delay


def test_resampled_length_is_the_ceiling() -> None:
    assert aio.resample(torch.zeros(1001), 44100, 16000).shape == (math.ceil(1001 * 16000 / 44100),)
    x = torch.randn(10)
    assert aio.resample(x, 16000, 16000) is x


@pytest.mark.parametrize(("ext", "subtype"), [(".wav", "PCM_16"), (".flac", "PCM_24"), (".ogg", None), (".mp3", None)])
def test_a_segment_read_equals_the_same_samples_of_a_whole_file_read(tmp_path: Path, ext: str, subtype: str) -> None:
    if ext == ".mp3" and not mp3_supported():
        pytest.skip("this libsndfile has no MP3 decoder")
    data = np.random.default_rng(1).uniform(-0.5, 0.5, (4 * 44100, 2))  # Ogg: longer than OGG_SEEK_GUARD
    path = write(tmp_path / f"noise{ext}", data, 44100, subtype)
    info = probe(path)
    whole = read_audio(path, info)
    assert whole.shape == (info.frames,)
    for start, frames in ((0, 1000), (12345, 4410), (info.frames - 777, 777), (70000, None)):
        seg = read_audio(path, info, start=start, frames=frames)
        end = info.frames if frames is None else start + frames
        assert torch.equal(seg, whole[start:end]), f"segment at {start}"


def test_segment_bounds(tmp_path: Path) -> None:
    path = write(tmp_path / "short.wav", tone(8000, 0.1), 8000)
    info = probe(path)
    with pytest.raises(DataError, match="runs past the file's 800 frames") as err:
        read_audio(path, info, start=700, frames=200)
    assert err.value.path == str(path)
    with pytest.raises(ValueError, match="start"):
        read_audio(path, info, start=-1)
    assert read_audio(path, info, start=800).shape == (0,)


# --------------------------------------------------------------------------- bad inputs


def _truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut{int(fraction * 1000)}_{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    noise = np.random.default_rng(2).uniform(-0.5, 0.5, (44100, 2))
    wav = write(tmp_path / "good.wav", noise, 44100, "PCM_16")
    flac = write(tmp_path / "good.flac", noise, 44100)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(3).bytes(4000))
    (tmp_path / "random.flac").write_bytes(np.random.default_rng(4).bytes(4000))
    (tmp_path / "notes.mp3").write_text("not an mp3 at all " * 40)
    nan = noise.astype(np.float32)
    nan[1234, 1] = np.nan
    inf = noise.astype(np.float32)
    inf[40000, 0] = np.inf
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "empty": (tmp_path / "empty.wav", "empty file"),
        "random-wav": (tmp_path / "random.wav", "cannot be read as audio"),
        "random-flac": (tmp_path / "random.flac", "cannot be read as audio"),
        "text-mp3": (tmp_path / "notes.mp3", "cannot be read as audio|cannot decode MP3"),
        "truncated-wav": (_truncate(wav, 0.6), r"truncated: its WAV header declares 176400 bytes of samples "
                                               r"\(44100 frames, \d+ present\)"),
        "truncated-flac": (_truncate(flac, 0.5), "last frames do not decode"),
        "truncated-flac-end": (_truncate(flac, 0.999), "last frames do not decode"),
        "zero-frames": (write(tmp_path / "zero.wav", np.zeros((0, 1)), 16000), "no audio frames"),
        "nan": (write(tmp_path / "nan.wav", nan, 44100, "FLOAT"), r"1 NaN/Inf sample\(s\) \(first at frame 1234\)"),
        "inf": (write(tmp_path / "inf.wav", inf, 44100, "FLOAT"), r"first at frame 40000"),
    }


BAD = ["missing", "empty", "random-wav", "random-flac", "text-mp3", "truncated-wav", "truncated-flac",
       "truncated-flac-end", "zero-frames", "nan", "inf"]


@pytest.mark.parametrize("case", BAD)
def test_every_bad_input_is_a_data_error_naming_the_file(tmp_path: Path, case: str) -> None:
    path, reason = bad_files(tmp_path)[case]
    with pytest.raises(DataError, match=reason) as err:
        read_audio(path, probe(path))  # probe catches all but NaN/Inf, which need every sample decoded
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


def test_find_audio(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    files = [write(tmp_path / "a" / "x.wav", np.zeros(100), 8000), write(tmp_path / "a" / "b" / "y.FLAC", np.zeros(100),
                                                                         8000)]
    (tmp_path / "a" / "notes.txt").write_text("hi")
    assert find_audio(tmp_path) == sorted(files)
    assert find_audio(files[0]) == [files[0]]
    with pytest.raises(DataError, match="unsupported extension '.txt'"):
        find_audio(tmp_path / "a" / "notes.txt")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        find_audio(tmp_path / "none")
    with pytest.raises(DataError, match="no such file or folder"):
        find_audio(tmp_path / "nowhere")


# --------------------------------------------------------------------------- real recordings


def shared(name: str) -> Path:
    path = SHARED_AUDIO / name
    if not path.is_file():
        pytest.skip(f"needs the shared sample data {path} (absent; set MPT_SHARED_DATA)")
    return path


@pytest.mark.shared_data
def test_a_real_sonic_pi_flac() -> None:
    path = shared("sonic-pi/ambi_choir.flac")
    info = probe(path)
    assert info == AudioInfo(frames=69305, rate=44100, channels=2, format="FLAC", subtype="PCM_16")
    raw, _ = sf.read(str(path), dtype="float32", always_2d=True)
    x = read_audio(path, info)
    np.testing.assert_allclose(x.numpy(), raw.mean(axis=1), rtol=0, atol=1e-7)
    assert torch.equal(read_audio(path, info, start=30000, frames=4410), x[30000:34410])
    y = read_audio(path, info, rate=16000)
    assert y.shape == (math.ceil(69305 * 16000 / 44100),) and not is_silent(y)
    feats, frames = fbank(y[None], None, 16000)
    assert int(frames[0]) == 1 + (len(y) - 400) // 160 and bool(torch.isfinite(feats).all())


@pytest.mark.shared_data
def test_a_real_8k_spoken_digit() -> None:
    path = shared("spoken-digits/7.wav")
    info = probe(path)
    assert (info.rate, info.channels, info.format, info.subtype) == (8000, 1, "WAV", "PCM_16")
    x = read_audio(path, info)
    assert x.shape == (info.frames,) and 0.5 < info.seconds < 2.5
    assert 0.01 < float(x.abs().max()) <= 1.0
    y = read_audio(path, info, rate=16000)
    assert y.shape == (2 * info.frames,)
    energy = torch.fft.rfft(y.double()).abs().square()
    freqs = torch.fft.rfftfreq(len(y), 1 / 16000)
    assert float(energy[freqs > 4000].sum() / energy.sum()) < 1e-3  # nothing above the 8 kHz file's Nyquist
