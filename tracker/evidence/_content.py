"""What an uploaded attachment really is, and a clean copy of it to keep and serve.

A customer or a partner uploads a photo of the damage or a PDF of a report. Before it is kept:

1. The type is read from the first bytes (``sniff``), never from the file name or the declared
   ``Content-Type``: the name lies, the content does not. A zip renamed ``photo.jpg`` is a zip.
   Only JPEG, PNG, WebP, HEIC and PDF are accepted; anything else is refused (``ContentRefused``).
2. An image's pixel count is checked from its header, before any pixel is decoded: a few kilobytes
   of PNG can claim 100,000 x 100,000 pixels and need 40 GB to decode (a decompression bomb).
   Above ``max_pixels`` the file is refused. Pillow's own bomb check, and any error while decoding
   (a truncated or damaged file), becomes ``ContentRefused`` with a plain-words detail too; callers
   never see a Pillow exception. Only the decoder of the sniffed format is tried, and only the
   first frame of an animated image (for HEIC, the primary image) is decoded and kept.
3. The EXIF orientation is applied to the pixels (``ImageOps.exif_transpose``): a phone stores a
   portrait photo as landscape pixels plus an "orientation 6" tag, and once the tag is dropped the
   picture would otherwise lie on its side.
4. Colours described by an embedded ICC profile (a phone's Display P3, a CMYK print profile) are
   converted to sRGB, so that the profile can be dropped without the colours shifting.
5. The picture is re-encoded into a fresh file with no metadata at all: no EXIF (GPS position,
   camera make and model, serial numbers, time taken), no XMP, no IPTC, no ICC profile, no PNG
   text chunks, no JPEG comments. Metadata leaks where the customer lives. Re-encoding also drops
   anything that is not pixels, e.g. a zip archive appended after the JPEG end marker (a polyglot
   file that is both a valid picture and an archive). JPEG stays JPEG (quality 88),
   PNG stays PNG (lossless), WebP stays WebP (quality 85). HEIC becomes JPEG: browsers other than
   Safari cannot show HEIC, and every party must be able to see the evidence. Modes are converted
   as the output format needs: JPEG holds no transparency (a transparent HEIC is flattened onto
   white), a palette or CMYK picture becomes RGB (RGBA when it has transparency).
6. A PDF is kept byte for byte: it cannot be re-encoded safely without a PDF toolkit, so its own
   metadata (author, producer) and any embedded images stay as uploaded. It must start with
   ``%PDF-``. It is served only as a download (``Content-Disposition: attachment`` with
   ``X-Content-Type-Options: nosniff``), so it never renders inline in the tracker's origin.
7. The clean copy is written into ``workdir``; its ``size`` and ``sha256`` are of the bytes
   written, read back (or, for a PDF, copied) in chunks. Memory: one decoded picture per process at
   a time (``DECODING``), rotated in place, never copied (an animation's first frame aside), and
   the PDF copy by the chunk.

``thumbnail`` makes a small metadata-free preview the same way: JPEG, or PNG when the picture has
transparency, fitting in ``box`` x ``box`` with its aspect kept. A JPEG source is decoded at
reduced size (``Image.draft``, DCT scaling), a HEIC source from its embedded thumbnail when one
is large enough, so a 48-megapixel photo never needs its full size in memory for a preview.

Everything here is synchronous and works on files on disk; async callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import Image, ImageCms, ImageOps

pillow_heif.register_heif_opener()

ACCEPTED = ("image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf")
# One image decoded at a time per process: it holds its pixels (33 MB for a 12 MP photo) while it is
# re-encoded, so a burst of uploads waits here instead of growing the process without bound.
DECODING = threading.BoundedSemaphore(1)
MAX_PIXELS = 50_000_000
HEAD_BYTES = 512
CHUNK_BYTES = 1024 * 1024

_ACCEPTED_WORDS = "JPEG, PNG, WebP, HEIC or PDF"
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})  # also list "mif1", but are AV1, not HEVC: not HEIC
_PILLOW_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/heic": "HEIF"}
# What Pillow and its plugins raise on a damaged, truncated or hostile file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, MemoryError)
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ContentRefused(Exception):
    """The upload is not kept: a type that is not accepted, or an image that does not decode or is too large.

    ``detail`` is plain words, fit to show to whoever uploaded the file.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Cleaned:
    """A clean file written into the work directory, described by its own bytes."""

    path: Path
    content_type: str
    size: int
    sha256: str
    width: int | None
    height: int | None


def sniff(head: bytes) -> str | None:
    """The accepted type the first bytes of a file show (magic numbers), or None."""
    head = bytes(head)
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if _is_heif(head):
        return "image/heic"
    return None


def _is_heif(head: bytes) -> bool:
    # ISO-BMFF: the file opens with a 'ftyp' box: size (4), 'ftyp', major brand (4), minor version (4),
    # then compatible brands (4 each) up to the end of the box.
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(head[:4], "big")
    if box_size == 0:  # the box runs to the end of the file
        box_end = len(head)
    elif 16 <= box_size:
        box_end = min(box_size, len(head))
    else:  # 1 (a 64-bit size, never used for ftyp) or too small to hold a brand
        return False
    major = head[8:12]
    if major in _AVIF_BRANDS:
        return False
    brands = {major} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    return not brands.isdisjoint(_HEIF_BRANDS)


def clean(src: Path, *, workdir: Path, max_pixels: int = MAX_PIXELS) -> Cleaned:
    """A clean copy of ``src`` in ``workdir`` (an existing directory): re-encoded without metadata, or a PDF as is.

    Raises ``ContentRefused`` for a type that is not accepted, an image over ``max_pixels`` or one that
    does not decode. HEIC comes out as JPEG (see the module docstring).
    """
    src = Path(src)
    with src.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if not head:
        raise ContentRefused(f"The file is empty. Attach a {_ACCEPTED_WORDS} file.")
    content_type = sniff(head)
    if content_type not in ACCEPTED:
        raise ContentRefused(f"Only {_ACCEPTED_WORDS} files can be attached; this file is none of them.")
    if content_type == "application/pdf":
        return _copy_pdf(src, Path(workdir))

    with DECODING:
        return _clean_image(src, content_type, Path(workdir), max_pixels)


def _clean_image(src: Path, content_type: str, workdir: Path, max_pixels: int) -> Cleaned:
    image = _decode(src, content_type, max_pixels=max_pixels)
    if content_type == "image/jpeg":
        out = _write(_for_jpeg(image), Path(workdir), "JPEG", ".jpg", quality=88)
        out_type = "image/jpeg"
    elif content_type == "image/png":
        out = _write(_for_png(image), Path(workdir), "PNG", ".png")
        out_type = "image/png"
    elif content_type == "image/webp":
        out = _write(_for_webp(image), Path(workdir), "WEBP", ".webp", quality=85)
        out_type = "image/webp"
    else:  # HEIC: browsers cannot show it, so the clean copy is a JPEG.
        out = _write(_for_jpeg(image), Path(workdir), "JPEG", ".jpg", quality=88)
        out_type = "image/jpeg"
    size, digest = _digest(out)
    return Cleaned(out, out_type, size, digest, image.width, image.height)


def thumbnail(src: Path, content_type: str, *, workdir: Path, box: int = 320) -> Cleaned | None:
    """A metadata-free preview of an image fitting in ``box`` x ``box``, aspect kept; None for a PDF.

    JPEG, or PNG when the picture has transparency. A picture smaller than the box is not enlarged.
    ``src`` is normally the output of ``clean`` with its ``content_type``; the file's content must
    match it, or the result is ``ContentRefused``.
    """
    if content_type == "application/pdf":
        return None
    if content_type not in _PILLOW_FORMAT:
        raise ContentRefused(f"Only {_ACCEPTED_WORDS} files can be attached; this file is none of them.")
    with DECODING:  # only JPEG and HEIC decode small (a PNG or WebP decodes whole)
        image = _decode(Path(src), content_type, max_pixels=MAX_PIXELS, draft_box=box)
        image.thumbnail((box, box), Image.Resampling.LANCZOS)
    if image.has_transparency_data:
        out = _write(_for_png(image), Path(workdir), "PNG", ".png")
        out_type = "image/png"
    else:
        out = _write(_for_jpeg(image), Path(workdir), "JPEG", ".jpg", quality=85, optimize=True)
        out_type = "image/jpeg"
    size, digest = _digest(out)
    return Cleaned(out, out_type, size, digest, image.width, image.height)


# -- decoding -------------------------------------------------------------------------------------


def _decode(src: Path, content_type: str, *, max_pixels: int, draft_box: int | None = None) -> Image.Image:
    """The first frame's pixels, upright, detached from the file; ``ContentRefused`` if it cannot be had.

    Memory: the decoded pixels are the one big allocation (3 bytes a pixel: 33 MB for a 12 MP photo).
    They are turned upright in place and never copied (no ``with``: closing the image would drop the
    pixels, and a copy would double them); the JPEG encoder then runs without Huffman optimization,
    which would buffer the whole coded image (about 20 MB more for the same photo, for 5 % smaller files).
    """
    opened = None
    try:
        opened = Image.open(src, formats=[_PILLOW_FORMAT[content_type]])
        width, height = opened.size  # from the header: nothing decoded yet
        if width <= 0 or height <= 0 or width * height > max_pixels:
            raise ContentRefused(
                f"The image is too large: {width} x {height} pixels, the limit is {max_pixels:,} pixels."
            )
        if draft_box is not None:
            # Decode at no less than twice the size that fits in the box (as Image.thumbnail does), then
            # resample down: sharp, and small in memory. JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale;
            # HEIC: an embedded thumbnail when one is large enough. Other formats ignore it.
            fit = min(draft_box / width, draft_box / height, 1.0)
            opened.draft(None, (max(1, round(2 * width * fit)), max(1, round(2 * height * fit))))
        opened.load()
        if getattr(opened, "is_animated", False):
            # An animation keeps its file open for the next frames: only the first is kept, as a copy
            # (animations are small), and the file is closed.
            first = opened.copy()
            opened.close()
            opened = first
        ImageOps.exif_transpose(opened, in_place=True)
        return opened
    except BaseException as exc:
        if opened is not None:
            opened.close()
        if isinstance(exc, ContentRefused):
            raise
        if isinstance(exc, Image.DecompressionBombError):
            raise ContentRefused("The image is too large to process.") from exc
        if isinstance(exc, _DECODE_ERRORS):
            raise ContentRefused("The image could not be read; the file may be damaged or incomplete.") from exc
        raise


def _to_srgb(image: Image.Image) -> Image.Image:
    """Colours under an embedded ICC profile, converted to sRGB so the profile can be dropped."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, profile, _SRGB, outputMode="RGBA" if image.mode == "RGBA" else "RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image  # an unusable profile: the pixels are kept as they are
    return converted if converted is not None else image


# -- encoding -------------------------------------------------------------------------------------


def _for_jpeg(image: Image.Image) -> Image.Image:
    image = _to_srgb(image)
    if image.has_transparency_data:  # JPEG has no alpha: flatten onto white
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("RGB")


def _for_png(image: Image.Image) -> Image.Image:
    image = _to_srgb(image)
    if image.mode in ("RGBA", "LA"):
        return image
    if image.has_transparency_data:  # palette or colour-key transparency lives in .info, which is dropped
        return image.convert("RGBA")
    if image.mode in ("1", "L", "RGB", "I;16", "I"):
        return image
    return image.convert("RGB")


def _for_webp(image: Image.Image) -> Image.Image:
    image = _to_srgb(image)
    mode = "RGBA" if image.has_transparency_data else "RGB"
    return image if image.mode == mode else image.convert(mode)


def _write(image: Image.Image, workdir: Path, pillow_format: str, suffix: str, **options: Any) -> Path:
    """Save ``image`` as a fresh file in ``workdir`` carrying pixels only."""
    # Pillow's encoders copy some metadata from .info when not told otherwise (a PNG's ICC profile, a
    # JPEG comment): with .info empty and no metadata option passed, nothing but pixels is written.
    image.info = {}
    fd, name = tempfile.mkstemp(dir=workdir, prefix="clean-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            image.save(out, format=pillow_format, **options)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


# -- bytes ----------------------------------------------------------------------------------------


def _copy_pdf(src: Path, workdir: Path) -> Cleaned:
    fd, name = tempfile.mkstemp(dir=workdir, prefix="clean-", suffix=".pdf")
    path = Path(name)
    sha, size = hashlib.sha256(), 0
    try:
        with src.open("rb") as source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Cleaned(path, "application/pdf", size, sha.hexdigest(), None, None)


def _digest(path: Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()
