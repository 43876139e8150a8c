"""Validating inbound photos by their content, with the same rules as portal uploads.

JPEG, PNG or WebP as Pillow detects them from the bytes (never the name or the declared MIME type), at most
10 MB, at most ``MAX_PIXELS`` pixels (checked from the header before any decoding, so a decompression bomb is
refused cheaply), and fully decodable (a truncated file is refused). The complaint code re-encodes and strips
EXIF when it stores the photo; this module only decides whether the bytes are an acceptable image.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image, UnidentifiedImageError

from pdn_ops.errors import MediaRefused

MAX_BYTES: Final = 10 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000
FORMATS: Final = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class CheckedPhoto:
    content: bytes
    mime_type: str
    width: int
    height: int


def check_photo(content: bytes) -> CheckedPhoto:
    """The photo if acceptable; otherwise MediaRefused whose ``args[0]`` is a catalogue key naming the reason."""
    if len(content) > MAX_BYTES:
        raise MediaRefused("notify.media.size")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past twice the limit raises) on huge images; we apply our own, lower cap.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content), formats=list(FORMATS)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise MediaRefused("notify.media.pixels")
                image_format = image.format or ""
                image.load()  # decodes every byte: truncated data fails here, not later in a thumbnailer
    except MediaRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaRefused("notify.media.pixels") from exc
    except UnidentifiedImageError as exc:
        raise MediaRefused("notify.media.type") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaRefused("notify.media.broken") from exc
    if image_format not in FORMATS:
        raise MediaRefused("notify.media.type")
    return CheckedPhoto(content=content, mime_type=FORMATS[image_format], width=width, height=height)
