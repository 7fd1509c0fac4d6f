"""Reading audio files: WAV, FLAC, Ogg Vorbis and MP3 through soundfile (libsndfile).

A file is probed once (:func:`probe`: its header through ``soundfile.info``, a RIFF chunk walk for
WAV files and a decode of its last :data:`TAIL` frames) and a segment is read by seeking to its first
frame and decoding only its frames (:func:`read_audio`) — never the whole file. Samples come back as
float32 (soundfile's ``dtype='float32'``: integer PCM divided by its full scale, ``2**(bits-1)``, so
in ``[-1, 1)``; float files as stored), mixed down to mono by the mean of the channels and, when
asked, resampled with ``torchaudio.functional.resample`` (a windowed-sinc polyphase filter, plain
torch). ``torchaudio.load`` is not used: in torchaudio ≥ 2.9 it needs torchcodec.

Positions (``start``, ``frames``) are always in the file's own sample rate: frame ``i`` is the
``i``-th sample of every channel (soundfile's frames), whatever rate the segment is resampled to.

Every unusable input is a :class:`~mpt.errors.DataError` naming the file: a missing, empty,
corrupt or truncated file, one that is not audio, a format this libsndfile cannot decode (MP3 needs
libsndfile ≥ 1.1), a file without frames, NaN or Inf samples. What libsndfile does with a truncated
file depends on the format, hence the two checks of :func:`probe`: a WAV cut short reads as a shorter
file without an error (libsndfile clamps the frame count to the bytes present), so its ``data`` chunk
size is compared with the file size; a FLAC or MP3 cut short keeps the frame count of its header and
fails, or returns fewer frames, when its end is decoded. An Ogg file cut at a page boundary is a
valid, shorter stream and cannot be told apart. A silent file is not an error (the log-mel floor
handles zeros); :func:`is_silent` tells.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpt.errors import DataError
from mpt.files import find_files
from mpt.registry import optional_import

__all__ = ["EXTENSIONS", "OGG_SEEK_GUARD", "TAIL", "AudioInfo", "find_audio", "is_silent", "mp3_supported", "probe",
           "read_audio", "resample"]

EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
TAIL = 4096  # frames decoded at the end of a file by probe() to catch truncation
OGG_SEEK_GUARD = 1 << 17  # Ogg segments starting this close to the end are decoded from here (see read_audio)
SOUNDFILE_HINT = "pip install soundfile (libsndfile bindings: the audio reader of mpt-audio)"
CONVERT_HINT = "convert it, e.g. ffmpeg -i IN -c:a flac OUT.flac"


@dataclass(frozen=True)
class AudioInfo:
    """What indexing an audio file needs (from its header, checked by :func:`probe`)."""

    frames: int  # samples per channel
    rate: int  # sample rate, Hz
    channels: int
    format: str  # libsndfile major format: "WAV", "FLAC", "OGG", "MP3", …
    subtype: str  # "PCM_16", "PCM_24", "FLOAT", "VORBIS", "MPEG_LAYER_III", …

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def import_soundfile() -> Any:  # noqa: ANN401 - the soundfile module
    return optional_import("soundfile", "reading audio", SOUNDFILE_HINT)


def mp3_supported() -> bool:
    """Whether this libsndfile decodes MP3 (libsndfile ≥ 1.1, bundled by soundfile ≥ 0.12 wheels)."""
    return "MP3" in import_soundfile().available_formats()


def find_audio(path: str | Path) -> list[Path]:
    """``path`` itself if it is an audio file, else every audio file below it (:data:`EXTENSIONS`,
    recursively, sorted). A DataError for a missing path, an unsupported file or a folder without any."""
    return find_files(path, EXTENSIONS, kind="audio")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def _check_wav_size(path: Path) -> None:
    """A RIFF/WAVE file whose ``data`` chunk claims more bytes than the file holds is truncated (libsndfile
    would silently read it as a shorter file). Streaming headers (size 0 or 0xFFFFFFFF) are not checked."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # RF64, W64 …: nothing to check here
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos, block = 12, 0
        for _ in range(256):  # chunks before "data": fmt, fact, LIST, …
            fh.seek(pos)
            chunk = fh.read(24)
            if len(chunk) < 8:
                return
            cid, length = chunk[:4], struct.unpack(endian + "I", chunk[4:8])[0]
            if cid == b"fmt " and len(chunk) >= 22:
                block = struct.unpack(endian + "H", chunk[20:22])[0]  # nBlockAlign: bytes per frame
            if cid == b"data":
                have = size - pos - 8
                if length not in (0, 0xFFFFFFFF) and have < length:
                    frames = f" ({length // block} frames, {have // block} present)" if block else ""
                    raise DataError(path, f"truncated: its WAV header declares {length} bytes of samples{frames} "
                                          f"but the file holds {have}; re-export or re-copy it")
                return
            pos += 8 + length + (length & 1)


def probe(path: str | Path) -> AudioInfo:
    """Check one audio file cheaply and describe it: its header, and a decode of its last :data:`TAIL`
    frames (a truncated FLAC or MP3 fails there). DataError for a missing, empty, corrupt, truncated or
    frameless file, or an MP3 where libsndfile has no MP3 decoder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")
    sf = import_soundfile()
    if path.suffix.lower() == ".mp3" and not mp3_supported():
        raise DataError(path, f"this libsndfile ({sf.__libsndfile_version__}) cannot decode MP3 (it needs "
                              f"libsndfile ≥ 1.1: pip install -U soundfile), or {CONVERT_HINT}")
    try:
        raw = sf.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        raise DataError(path, f"cannot be read as audio ({_reason(exc)}): corrupt, truncated or not an "
                              f"audio file?") from None
    info = AudioInfo(frames=int(raw.frames), rate=int(raw.samplerate), channels=int(raw.channels),
                     format=str(raw.format), subtype=str(raw.subtype))
    if info.rate <= 0 or info.channels <= 0:
        raise DataError(path, f"invalid header: {info.rate} Hz, {info.channels} channel(s)")
    if info.format in ("WAV", "WAVEX"):
        _check_wav_size(path)
    if info.frames <= 0:
        raise DataError(path, "no audio frames (an empty recording)")
    block = min(info.frames, TAIL)
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(info.frames - block)
            got = len(f.read(block, dtype="float32", always_2d=True))
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(path, f"its last frames do not decode ({_reason(exc)}): truncated or corrupt? "
                              f"re-export or re-copy it") from None
    if got < block:
        raise DataError(path, f"truncated: its header declares {info.frames} frames but only {got} of its last "
                              f"{block} decode; re-export or re-copy it")
    return info


def read_audio(path: str | Path, info: AudioInfo | None = None, start: int = 0, frames: int | None = None,
               rate: int | None = None) -> torch.Tensor:
    """Frames ``[start, start + frames)`` of a file (positions in the file's own rate; ``frames=None``:
    to the end) → mono float32 ``[samples]``: the mean of the channels, resampled to ``rate`` Hz when
    given and different (``ceil(frames * rate / info.rate)`` samples; the segment is resampled on its
    own, so its first and last few samples differ slightly from a slice of the whole file resampled).

    Only the segment is decoded (a seek, then a read), except in an Ogg file: libsndfile 1.2 lands a seek
    into the last Ogg page some samples late (52 in a 44.1 kHz test file; the whole-file read is right),
    so a segment starting within the last :data:`OGG_SEEK_GUARD` frames (~3 s at 44.1 kHz; a page is
    ~4 KB, well under it) is decoded from there. ``info`` is :func:`probe`'s (probed here when
    None). DataError for a segment past the file's end (a file changed since it was probed), a decoding
    error, fewer frames than the header declares, or NaN/Inf samples."""
    path = Path(path)
    if info is None:
        info = probe(path)
    if start < 0 or (frames is not None and frames < 0):
        raise ValueError(f"{path}: a segment needs start ≥ 0 and frames ≥ 0, got start={start}, frames={frames}")
    frames = info.frames - start if frames is None else frames
    if start + frames > info.frames:
        raise DataError(path, f"segment [{start}, {start + frames}) runs past the file's {info.frames} frames; "
                              "did the file change since it was probed?")
    sf = import_soundfile()
    seek = start
    if info.format == "OGG":  # libsndfile 1.2 seeks into the last Ogg page land a few dozen samples late
        seek = min(start, max(0, info.frames - OGG_SEEK_GUARD))
    try:
        with sf.SoundFile(str(path)) as f:
            if seek:
                f.seek(seek)
            data = f.read(start - seek + frames, dtype="float32", always_2d=True)[start - seek:]  # [frames, channels]
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(path, f"decoding failed ({_reason(exc)}): corrupt or truncated?") from None
    if len(data) < frames:
        raise DataError(path, f"truncated: frames {start}..{start + frames} requested, only "
                              f"{start + len(data)} of its {info.frames} frames decode")
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    finite = np.isfinite(wave)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(path, f"{len(bad)} NaN/Inf sample(s) (first at frame {start + int(bad[0])}); "
                              "clean or re-export the file")
    x = torch.from_numpy(np.ascontiguousarray(wave))
    if rate is not None and rate != info.rate:
        x = resample(x, info.rate, rate)
    return x


def resample(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``[..., n]`` at ``orig`` Hz → ``[..., ceil(n * new / orig)]`` at ``new`` Hz with
    ``torchaudio.functional.resample`` (Hann-windowed sinc, 6 zero crossings, rolloff 0.99: a 1 kHz tone
    keeps its frequency and its amplitude within 0.05 %; output sample 0 is input sample 0)."""
    if orig <= 0 or new <= 0:
        raise ValueError(f"sample rates must be positive, got {orig} → {new}")
    if orig == new:
        return x
    try:
        from torchaudio.functional import resample as _resample
    except ImportError as exc:
        raise ImportError(f"resampling needs torchaudio ({exc}): pip install torchaudio") from None
    return _resample(x, int(orig), int(new))


def is_silent(x: torch.Tensor, threshold: float = 0.0) -> bool:
    """Whether every sample is within ``threshold`` of 0 (an all-zero clip with the default; an empty
    clip counts as silent)."""
    return x.numel() == 0 or bool(x.abs().max() <= threshold)
