"""The real media type of some bytes, from their magic numbers.

Extensions and Content-Type headers are whatever a seller's CDN says; the first bytes are what a
decoder will actually see, so they are the only thing trusted.
"""

from __future__ import annotations

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash",
                 b"qt  ", b"3gp4", b"3gp5", b"3g2a", b"M4V ", b"mmp4"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"F4A "}
_TS_PACKET = 188


def sniff(head: bytes) -> str | None:
    """Return a short format name ('jpeg', 'png', 'mp4', ...) or None if unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if len(head) > 2 * _TS_PACKET and head[0] == head[_TS_PACKET] == head[2 * _TS_PACKET] == 0x47:
        return "mpegts"  # three sync bytes a packet apart: needs the first 377 bytes
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    """ISO base media files share one box; the brands say whether it is a photo, video or audio."""
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    if head[8:12] in _AUDIO_BRANDS:
        return "m4a"
    if brands & _VIDEO_BRANDS:
        return "mp4"
    return None


IMAGE_FORMATS = frozenset({"jpeg", "png", "gif", "webp", "bmp", "tiff", "heif", "avif"})
VIDEO_FORMATS = frozenset({"mp4", "matroska", "avi", "mpegts"})
AUDIO_FORMATS = frozenset({"wav", "mp3", "flac", "ogg", "m4a"})
