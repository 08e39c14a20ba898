"""Audio decoding: every container and codec a seller uploads, and the inputs that must fail."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from medialayer.errors import MediaTooLarge, UnsupportedMedia
from medialayer.kinds.audio.decode import SAMPLE_RATE, Limits, decode_path, decode_stream
from medialayer.kinds.audio.kind import AudioKind
from medialayer.kinds.base import Encoded

from audio_synth import RATE, melody, wav_bytes, write


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".opus", ".flac", ".m4a"])
def test_each_format_decodes_to_mono_at_the_working_rate(tmp_path: Path, suffix: str) -> None:
    x = melody(3.0, 1)
    path = write(tmp_path / f"a{suffix}", x, codec="libopus" if suffix == ".opus" else None)
    pcm = decode_path(path)
    assert pcm.rate == SAMPLE_RATE
    assert pcm.seconds == pytest.approx(3.0, abs=0.1)
    assert 0.03 < float(np.sqrt(np.mean(pcm.samples**2))) < 0.3  # the signal, not silence


@pytest.mark.parametrize(("suffix", "video_codec", "audio_codec"), [
    (".mp4", "mpeg4", "aac"), (".ts", "mpeg2video", "mp2"), (".flv", "flv", "aac")])
def test_the_soundtrack_of_a_video_is_decoded(tmp_path: Path, suffix: str, video_codec: str,
                                              audio_codec: str) -> None:
    """MPEG-TS and FLV show their streams in their packets: the short probe still finds them."""
    path = tmp_path / f"clip{suffix}"
    x = (melody(2.0, 2) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream(audio_codec, rate=RATE, layout="mono")
        for i in range(20):
            image = np.full((48, 64, 3), i * 10, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for at in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, at: at + 1024], format="s16",
                                               layout="mono")
            frame.sample_rate = RATE
            frame.time_base = Fraction(1, RATE)
            frame.pts = at
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    assert decode_path(path).seconds == pytest.approx(2.0, abs=0.1)


def test_channels_in_phase_mix_down_to_their_level_without_clipping() -> None:
    loud = 0.9 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    for layout in ("mono", "stereo", "5.1"):
        pcm = decode_stream(io.BytesIO(wav_bytes(loud, layout=layout)))
        assert float(np.max(np.abs(pcm.samples))) == pytest.approx(0.9, abs=0.03), layout


def test_a_video_without_sound_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "mute.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for packet in video.encode(av.VideoFrame.from_ndarray(
                np.zeros((48, 64, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    with pytest.raises(UnsupportedMedia, match="no audio stream"):
        decode_path(path)


def test_empty_and_garbage_files_are_unsupported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(0).bytes(20_000))
    with pytest.raises(UnsupportedMedia, match="empty"):
        decode_path(empty)
    with pytest.raises(UnsupportedMedia):
        decode_path(garbage)
    with pytest.raises(UnsupportedMedia):
        decode_stream(io.BytesIO(b"RIFF\x00\x00\x00\x00WAVEfmt "))


def test_a_file_claiming_ten_hours_is_refused_before_decoding(tmp_path: Path) -> None:
    """An MP3 whose Xing header counts ten hours of frames; one second of them is there."""
    data = bytearray(write(tmp_path / "a.mp3", melody(1.0, 1)).read_bytes())
    tag = data.index(b"Info") + 4  # LAME's Xing tag of a constant-rate file
    flags, _ = struct.unpack_from(">II", data, tag)
    assert flags & 1  # the frame count is present
    struct.pack_into(">I", data, tag + 4, 10 * 3600 * RATE // 576)
    with pytest.raises(MediaTooLarge, match="long, over"):
        decode_stream(io.BytesIO(bytes(data)))


def test_a_wav_header_claiming_more_than_the_file_holds_decodes_what_is_there() -> None:
    rate = 8000
    claimed = rate * 2 * 3600 * 10
    header = (b"RIFF" + struct.pack("<I", 36 + claimed) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
              + b"data" + struct.pack("<I", claimed))
    assert decode_stream(io.BytesIO(header + bytes(rate * 2))).seconds == pytest.approx(1.0)


def test_audio_past_the_duration_cap_is_refused_while_decoding() -> None:
    data = wav_bytes(melody(3.0, 3))
    with pytest.raises(MediaTooLarge):
        decode_stream(io.BytesIO(data), Limits(max_seconds=2.0))
    with pytest.raises(MediaTooLarge):
        decode_stream(io.BytesIO(data), Limits(max_bytes=1000))


def test_silence_cannot_be_indexed_and_finds_nothing_as_a_query() -> None:
    kind = AudioKind()
    silence = wav_bytes(np.zeros(3 * RATE))
    with pytest.raises(UnsupportedMedia, match="silent"):
        kind.stored(io.BytesIO(silence))
    assert kind.query(io.BytesIO(silence)).silent


def test_fingerprints_survive_their_stored_form() -> None:
    kind = AudioKind()
    fp = kind.stored(io.BytesIO(wav_bytes(melody(4.0, 4))))
    back = kind.decode(kind.encode(fp))
    assert back.peaks.frames == fp.peaks.frames
    assert np.allclose(back.peaks.t, fp.peaks.t, atol=1 / 16)
    assert np.allclose(back.peaks.f, fp.peaks.f, atol=1 / 256)
    with pytest.raises(UnsupportedMedia):
        kind.decode(Encoded(b"\x00" * 5))
