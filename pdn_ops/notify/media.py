"""Validating inbound photos by their content, with the same rules as portal uploads.

JPEG, PNG or WebP as Pillow detects them from the bytes (never the name or the declared MIME type), at most
10 MB, at most ``MAX_PIXELS`` pixels (checked from the header before any decoding, so a decompression bomb is
refused cheaply), and fully decodable (a truncated file is refused). The complaint code re-encodes and strips
EXIF when it stores the photo; this module only decides whether the bytes are an acceptable image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pdn_ops.core import photos
from pdn_ops.core.errors import MediaRefused, PhotoRefused

# One set of rules for every way a photo arrives: the portal's (pdn_ops.core.photos).
MAX_BYTES: Final = photos.MAX_BYTES
MAX_PIXELS: Final = photos.MAX_PIXELS
FORMATS: Final = {fmt: mime for fmt, (mime, _ext) in photos.FORMATS.items()}
# The portal's refusal reasons, as the notification catalogue's keys.
_REASONS: Final = {
    "complaints.photo.too_big": "notify.media.size",
    "complaints.photo.too_many_pixels": "notify.media.pixels",
    "complaints.photo.not_image": "notify.media.type",
}


@dataclass(frozen=True, slots=True)
class CheckedPhoto:
    content: bytes
    mime_type: str
    width: int
    height: int


def check_photo(content: bytes) -> CheckedPhoto:
    """The photo if acceptable; otherwise MediaRefused whose ``args[0]`` is a catalogue key naming the reason."""
    try:
        image = photos.inspect(content, "media")
    except PhotoRefused as exc:
        raise MediaRefused(_REASONS.get(exc.reason, "notify.media.broken")) from exc
    with image:
        return CheckedPhoto(content=content, mime_type=FORMATS[image.format or ""], width=image.width,
                            height=image.height)
