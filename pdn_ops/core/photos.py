"""Complaint photos: decide the type from the content, refuse what is not a plain JPEG/PNG/WebP photo, re-encode.

Re-encoding from decoded pixels drops EXIF (GPS included), ICC tricks and anything appended after the image
data, so what we store and serve is only pixels we produced ourselves. Files live under
``DATA_DIR/attachments`` with random names; the web layer serves them only through an access-checked route.

Storing is atomic with the database: ``stage`` writes into ``attachments/.staging`` (the same file system), the
caller's transaction commits the rows, then ``publish`` renames the files into the store (``discard`` removes
them if it rolls back). A crash in between leaves staged files only; ``sweep`` (the janitor) publishes those a
committed row names and removes the rest, and removes files of the store no row names.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pdn_ops.core.errors import PhotoRefused

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40-megapixel phone photo is fine; a 50,000 x 50,000 "bomb" is not
MAX_PHOTOS = 5
THUMB_SIZE = (320, 320)
FORMATS = {"JPEG": ("image/jpeg", ".jpg"), "PNG": ("image/png", ".png"), "WEBP": ("image/webp", ".webp")}



@dataclass(frozen=True, slots=True)
class StoredPhoto:
    stored_name: str
    thumb_name: str
    media_type: str
    original_name: str
    size: int
    width: int
    height: int


def clean_name(name: str | None) -> str:
    """A file name safe to show: no directories, no control or format characters, bounded length."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    return kept.strip(" .")[:120] or "photo"


def attachment_dir(data_dir: Path) -> Path:
    path = data_dir / "attachments"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def inspect(data: bytes, name: str) -> Image.Image:
    """Decode ``data`` fully or raise PhotoRefused with the reason."""
    if len(data) > MAX_BYTES:
        raise PhotoRefused("complaints.photo.too_big", name)
    if not data:
        raise PhotoRefused("complaints.photo.empty", name)
    try:
        with warnings.catch_warnings():
            # Pillow warns before its own bomb limit; we decide by our cap below instead of its warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            if image.width * image.height > MAX_PIXELS:
                raise PhotoRefused("complaints.photo.too_many_pixels", name)
            image.load()
    except PhotoRefused:
        raise
    except Image.DecompressionBombError:
        raise PhotoRefused("complaints.photo.too_many_pixels", name) from None
    except UnidentifiedImageError:
        raise PhotoRefused("complaints.photo.not_image", name) from None
    except (OSError, SyntaxError, ValueError):
        raise PhotoRefused("complaints.photo.damaged", name) from None
    if image.format not in FORMATS:
        raise PhotoRefused("complaints.photo.not_image", name)
    return image


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    elif fmt == "PNG":
        keep = image if image.mode in ("RGB", "RGBA", "L", "LA", "P") else image.convert("RGBA")
        keep.save(out, "PNG", optimize=True)
    else:
        keep = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
        keep.save(out, "WEBP", quality=82)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class PreparedPhoto:
    """A checked, re-encoded photo and its thumbnail, in memory: the CPU-heavy half of storing one."""

    original_name: str
    media_type: str
    ext: str
    body: bytes
    thumb: bytes
    width: int
    height: int


def prepare(data: bytes, original_name: str | None) -> PreparedPhoto:
    """Check and re-encode an upload (raises PhotoRefused). No I/O: callers run it before opening a transaction,
    so decoding five large photos never holds the database's write lock."""
    name = clean_name(original_name)
    image = inspect(data, name)
    fmt = str(image.format)
    media_type, ext = FORMATS[fmt]
    # Apply the EXIF orientation to the pixels, then drop EXIF altogether (GPS, camera serials).
    upright = ImageOps.exif_transpose(image) or image
    clean = Image.new(upright.mode, upright.size)
    clean.paste(upright)
    if upright.mode == "P" and upright.getpalette():
        clean.putpalette(upright.getpalette() or [])
    body = _encode(clean, fmt)
    thumb = clean.convert("RGB")
    thumb.thumbnail(THUMB_SIZE)
    thumb_body = io.BytesIO()
    thumb.save(thumb_body, "JPEG", quality=80)
    return PreparedPhoto(original_name=name, media_type=media_type, ext=ext, body=body, thumb=thumb_body.getvalue(),
                         width=clean.width, height=clean.height)


STAGING = ".staging"


def staging_dir(data_dir: Path) -> Path:
    path = attachment_dir(data_dir) / STAGING
    path.mkdir(exist_ok=True, mode=0o700)
    return path


def _write_whole(path: Path, body: bytes) -> None:
    """All of ``body`` or no file: a full disk must not leave a zero-byte or truncated photo behind."""
    try:
        with path.open("xb") as out:
            out.write(body)
    except OSError:
        path.unlink(missing_ok=True)
        raise


def stage(prepared: PreparedPhoto, data_dir: Path) -> StoredPhoto:
    """Write the photo and its thumbnail into the staging folder (not yet served); raises OSError (ENOSPC...)."""
    folder = staging_dir(data_dir)
    stem = secrets.token_hex(16)
    stored, thumb_name = f"{stem}{prepared.ext}", f"{stem}.thumb.jpg"
    _write_whole(folder / stored, prepared.body)
    try:
        _write_whole(folder / thumb_name, prepared.thumb)
    except OSError:
        (folder / stored).unlink(missing_ok=True)
        raise
    return StoredPhoto(stored_name=stored, thumb_name=thumb_name, media_type=prepared.media_type,
                       original_name=prepared.original_name, size=len(prepared.body), width=prepared.width,
                       height=prepared.height)


def store(data: bytes, original_name: str | None, data_dir: Path) -> StoredPhoto:
    """Check, re-encode and store at once, outside any transaction (benchmarks, fixtures)."""
    stored = stage(prepare(data, original_name), data_dir)
    publish(data_dir, [stored.stored_name, stored.thumb_name])
    return stored


def publish(data_dir: Path, names: Iterable[str]) -> None:
    """Move staged files into the store (a rename on the same file system: atomic, needs no free space)."""
    folder = attachment_dir(data_dir)
    for name in names:
        with contextlib.suppress(FileNotFoundError):  # published already (the janitor was first)
            (folder / STAGING / name).replace(folder / name)


def discard(data_dir: Path, names: Iterable[str]) -> None:
    folder = attachment_dir(data_dir) / STAGING
    for name in names:
        (folder / name).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Swept:
    published: int
    removed_staged: int
    removed_orphans: int


def sweep(data_dir: Path, referenced: Callable[[set[str]], set[str]], *, min_age_s: float = 600.0,
          now: float | None = None) -> Swept:
    """The janitor: staged files older than ``min_age_s`` are published if a committed row names them (a crash
    between commit and publish) and removed otherwise (a crash before the commit); files in the store that no
    row names are removed. ``referenced(names)`` returns the names the database knows. The age keeps it away
    from filings in progress."""
    now = time.time() if now is None else now
    folder = attachment_dir(data_dir)
    staged = _old_files(folder / STAGING, now - min_age_s)
    known = referenced(set(staged)) if staged else set()
    publish(data_dir, sorted(known))
    discard(data_dir, sorted(set(staged) - known))
    stored = _old_files(folder, now - min_age_s)
    orphans = set(stored) - (referenced(set(stored)) if stored else set())
    for name in orphans:
        (folder / name).unlink(missing_ok=True)
    return Swept(published=len(known), removed_staged=len(set(staged) - known), removed_orphans=len(orphans))


def _old_files(folder: Path, before: float) -> list[str]:
    if not folder.is_dir():
        return []
    found = []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < before:
            found.append(entry.name)
    return found


def path_of(data_dir: Path, stored_name: str) -> Path:
    """The file for a stored name; names are ours (hex + fixed suffix), checked again so no path ever escapes."""
    if "/" in stored_name or "\\" in stored_name or stored_name.startswith("."):
        raise ValueError("not a stored attachment name")
    return attachment_dir(data_dir) / stored_name
