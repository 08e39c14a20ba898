"""Fuzzing the sniffer, decoders and fingerprint with mutated real files of every accepted format.

Each file is made here with Pillow (pillow-heif for HEIC), then mutated by hypothesis: bytes
flipped, the file cut short, foreign bytes spliced in, header fields overwritten. Whatever comes
out, `fingerprint_bytes` either fingerprints it or raises UnsupportedMedia / MediaTooLarge with a
message free of object reprs; any other exception (an OpenCV assertion, a numpy error) fails.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medialayer.errors import MediaTooLarge, UnsupportedMedia
from medialayer.kinds.image import fingerprint_bytes

import synth

EXAMPLES = 30
"""Mutations tried per format and per kind of mutation (the suite stays fast)."""
REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


def _encode(fmt: str) -> bytes:
    im = synth.photo(11, (96, 72))
    buf = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.from_pillow(im).save(buf, quality=70)
    elif fmt == "GIF":
        im.convert("P").save(buf, fmt)
    else:
        im.save(buf, fmt)
    return buf.getvalue()


FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"]


@pytest.fixture(scope="module", params=FORMATS)
def original(request: pytest.FixtureRequest) -> bytes:
    try:
        data = _encode(request.param)
    except (KeyError, OSError) as e:  # a Pillow build without the encoder
        pytest.skip(f"this Pillow cannot write {request.param}: {e}")
    fingerprint_bytes(data)  # the unmutated file is accepted
    return data


def _survives(data: bytes) -> None:
    try:
        fingerprint_bytes(data, query=True).expanded()
    except (UnsupportedMedia, MediaTooLarge) as e:
        assert not REPR.search(str(e)), str(e)


FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1,
                      max_size=8))
def test_byte_flips(original: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(original)
    for at, value in flips:
        data[at % len(data)] = value
    _survives(bytes(data))


@FUZZ
@given(keep=st.floats(0.0, 1.0), tail=st.sampled_from([b"", b"\xff\xd9", b"\x00" * 16]))
def test_truncations(original: bytes, keep: float, tail: bytes) -> None:
    _survives(original[: int(len(original) * keep)] + tail)


@FUZZ
@given(at=st.floats(0.0, 1.0), cut=st.integers(0, 64), foreign=st.binary(max_size=256))
def test_splices(original: bytes, at: float, cut: int, foreign: bytes) -> None:
    i = int(len(original) * at)
    _survives(original[:i] + foreign + original[i + cut:])


@FUZZ
@given(at=st.integers(0, 47), field=st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x7f\xff\xff\xff",
                                                    b"\x00\x00\x00\x01", b"\xff\xff\xff\xff"]))
def test_header_fields(original: bytes, at: int, field: bytes) -> None:
    """Sizes, lengths and counts in the first bytes set to 0, 1 or their largest values."""
    _survives(original[:at] + field + original[at + len(field):])
