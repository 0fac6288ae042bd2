"""What an uploaded attachment really is, and its clean copy (tracker.evidence._content).

Every fixture is made here with Pillow (and pillow-heif for HEIC); no binary file is committed.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageDraw
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngInfo

from tracker.evidence import _content
from tracker.evidence._content import ACCEPTED, Cleaned, ContentRefused, clean, sniff, thumbnail

GPS_IFD = 0x8825
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
CAMERA_MODEL = "Snoopcam-X9000"
MINIMAL_PDF = (
    b"%PDF-1.4\n"
    b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n"
    b"%%EOF\n"
)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    out = tmp_path / "work"
    out.mkdir()
    return out


def _two_colour(size: tuple[int, int] = (40, 20), mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue: orientation is visible in the pixels."""
    image = Image.new(mode, size, "red")
    ImageDraw.Draw(image).rectangle((size[0] // 2, 0, size[0], size[1]), fill="blue")
    return image


def _noise(size: tuple[int, int]) -> Image.Image:
    """Pixels a JPEG cannot compress to nothing, so a cut file is cut in the scan data."""
    return Image.frombytes("RGB", size, hashlib.shake_256(b"noise").digest(size[0] * size[1] * 3))


def _gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "Acme Phones"
    exif[MODEL] = CAMERA_MODEL
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (51.0, 30.0, 26.5)
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 39.9)
    return exif


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels and which holds no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b""
    )


def _a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload/secret.txt", "not a photo")
    return buffer.getvalue()


def _assert_described(result: Cleaned) -> bytes:
    """The Cleaned record tells the truth about its own file; returns the bytes."""
    data = result.path.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert sniff(data[:_content.HEAD_BYTES]) == result.content_type
    return data


def _assert_no_metadata(result: Cleaned) -> None:
    data = result.path.read_bytes()
    with Image.open(result.path) as out:
        assert dict(out.getexif()) == {}
        for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment", "Comment", "Description"):
            assert key not in out.info
    assert b"Exif" not in data
    assert CAMERA_MODEL.encode() not in data


# -- sniff ------------------------------------------------------------------------------------------


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 4 + len(body)) + body + b"\x00\x00\x00\x08mdat"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\xff\xd8\xff\xe1\x00\x10Exif\x00", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (_ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
        (_ftyp(b"mif1", b"heic"), "image/heic"),
        (_ftyp(b"msf1", b"hevc"), "image/heic"),
        (_ftyp(b"isom", b"heix"), "image/heic"),  # a HEIF brand among the compatible ones
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"PK\x03\x04\x14\x00\x00\x00", None),  # zip (and docx, xlsx, jar...)
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"GIF87a\x01\x00\x01\x00", None),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),  # RIFF but not WebP
        (_ftyp(b"isom", b"mp41", b"avc1"), None),  # an MP4 video
        (_ftyp(b"avif", b"mif1", b"miaf"), None),  # AVIF lists mif1 but is not HEIC
        (_ftyp(b"qt  "), None),
        (b"\x00\x00\x00\x08ftyp", None),  # a box too small to hold a brand
        (b"\xff\xd8", None),  # too short to be a JPEG
        (b"%PDF", None),
        (b" %PDF-1.4", None),  # the magic must be at the start
        (b"<html><body>hello</body></html>", None),
        (b"hello, this is plain text", None),
        (b"", None),
    ],
)
def test_sniff_reads_the_magic_number(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("HEIF", "image/heic")],
)
def test_sniff_knows_what_the_encoders_write(fmt: str, expected: str) -> None:
    assert sniff(_encode(_two_colour(), fmt)[:_content.HEAD_BYTES]) == expected


def test_accepted_types() -> None:
    assert set(ACCEPTED) == {"image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf"}


# -- metadata ---------------------------------------------------------------------------------------


def test_gps_exif_is_gone_from_a_jpeg(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "upload.bin", _encode(_two_colour(), "JPEG", exif=_gps_exif()))
    with Image.open(src) as original:  # the fixture does carry what must go
        assert original.getexif()[MODEL] == CAMERA_MODEL
        assert original.getexif().get_ifd(GPS_IFD)[1] == "N"

    result = clean(src, workdir=workdir)

    assert result.content_type == "image/jpeg"
    assert result.path.parent == workdir
    assert (result.width, result.height) == (40, 20)
    data = _assert_described(result)
    assert b"Acme Phones" not in data
    _assert_no_metadata(result)
    with Image.open(result.path) as out:
        assert out.size == (40, 20)
        assert out.getpixel((5, 10))[0] > 200 and out.getpixel((35, 10))[2] > 200


def test_exif_orientation_is_applied_then_dropped(tmp_path: Path, workdir: Path) -> None:
    exif = _gps_exif()
    exif[ORIENTATION] = 6  # stored landscape, shown rotated 90 degrees clockwise
    src = _write(tmp_path / "portrait.jpg", _encode(_two_colour((40, 20)), "JPEG", exif=exif))

    result = clean(src, workdir=workdir)

    assert (result.width, result.height) == (20, 40)
    with Image.open(result.path) as out:
        assert out.size == (20, 40)
        top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
        assert top[0] > 200 and top[2] < 60  # the stored left half (red) is now on top
        assert bottom[2] > 200 and bottom[0] < 60
        assert ORIENTATION not in out.getexif()
    _assert_no_metadata(result)


def test_jpeg_comment_and_xmp_are_gone(tmp_path: Path, workdir: Path) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>51,30.4N</exif:GPSLatitude></x:xmpmeta>'
    src = _write(tmp_path / "a.jpg", _encode(_two_colour(), "JPEG", comment=b"home of J. Doe", xmp=xmp))
    with Image.open(src) as original:
        assert original.info["comment"] == b"home of J. Doe" and "xmp" in original.info

    result = clean(src, workdir=workdir)

    data = _assert_described(result)
    assert b"J. Doe" not in data and b"GPSLatitude" not in data
    _assert_no_metadata(result)


def test_an_icc_profile_is_applied_then_dropped(tmp_path: Path, workdir: Path) -> None:
    # Converted to sRGB before the profile is dropped: from sRGB itself, the colours stay as they are.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = _write(tmp_path / "a.jpg", _encode(_two_colour(), "JPEG", icc_profile=srgb))
    with Image.open(src) as original:
        assert "icc_profile" in original.info

    result = clean(src, workdir=workdir)

    assert b"ICC_PROFILE" not in _assert_described(result)
    _assert_no_metadata(result)
    with Image.open(result.path) as out:
        assert out.getpixel((5, 10))[0] > 200 and out.getpixel((35, 10))[2] > 200


def test_png_text_chunks_and_icc_profile_are_gone(tmp_path: Path, workdir: Path) -> None:
    info = PngInfo()
    info.add_text("Comment", "taken at 12 Elm Street")
    info.add_text("Description", "kitchen leak", zip=True)
    info.add_itxt("Author", "J. Doe")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = _write(tmp_path / "a.png", _encode(_two_colour(), "PNG", pnginfo=info, icc_profile=srgb))
    assert b"tEXt" in src.read_bytes() and b"iCCP" in src.read_bytes()

    result = clean(src, workdir=workdir)

    assert result.content_type == "image/png"
    data = _assert_described(result)
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf", b"Elm Street", b"J. Doe"):
        assert chunk not in data
    _assert_no_metadata(result)
    with Image.open(result.path) as out:
        assert out.size == (40, 20) and out.getpixel((5, 5)) == (255, 0, 0)  # lossless


def test_a_palette_png_keeps_its_transparency(tmp_path: Path, workdir: Path) -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    ImageDraw.Draw(image).rectangle((5, 0, 9, 9), fill=1)
    src = _write(tmp_path / "p.png", _encode(image, "PNG", transparency=1))

    result = clean(src, workdir=workdir)

    with Image.open(result.path) as out:
        assert out.mode == "RGBA"
        assert out.getpixel((1, 1)) == (255, 0, 0, 255)
        assert out.getpixel((8, 8))[3] == 0


def test_a_cmyk_jpeg_becomes_rgb(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "print.jpg", _encode(_two_colour().convert("CMYK"), "JPEG"))
    result = clean(src, workdir=workdir)
    with Image.open(result.path) as out:
        assert out.mode == "RGB"
        assert out.getpixel((5, 10))[0] > 200


# -- what the content is, whatever the name says ---------------------------------------------------


def test_a_zip_named_photo_jpg_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "photo.jpg", _a_zip())
    with pytest.raises(ContentRefused) as refused:
        clean(src, workdir=workdir)
    assert "JPEG, PNG, WebP, HEIC or PDF" in refused.value.detail
    assert list(workdir.iterdir()) == []


def test_a_zip_appended_to_a_jpeg_does_not_survive(tmp_path: Path, workdir: Path) -> None:
    payload = _a_zip()
    src = _write(tmp_path / "polyglot.jpg", _encode(_two_colour(), "JPEG") + payload)
    assert zipfile.is_zipfile(src)  # the upload is both a picture and an archive

    result = clean(src, workdir=workdir)

    data = _assert_described(result)
    assert b"PK\x03\x04" not in data and b"secret.txt" not in data
    assert not zipfile.is_zipfile(result.path)
    assert data.endswith(b"\xff\xd9")  # nothing after the JPEG end marker
    with Image.open(result.path) as out:
        assert out.size == (40, 20)


def test_a_text_file_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "report.pdf", b"Dear support, the boiler is broken again.\n")
    with pytest.raises(ContentRefused) as refused:
        clean(src, workdir=workdir)
    assert "JPEG, PNG, WebP, HEIC or PDF" in refused.value.detail


def test_a_gif_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "anim.gif", _encode(_two_colour(), "GIF"))
    with pytest.raises(ContentRefused):
        clean(src, workdir=workdir)


def test_an_empty_file_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "empty.jpg", b"")
    with pytest.raises(ContentRefused) as refused:
        clean(src, workdir=workdir)
    assert "empty" in refused.value.detail
    assert list(workdir.iterdir()) == []


# -- images that do not decode ---------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.6, 0.05])
def test_a_truncated_jpeg_is_refused_in_plain_words(tmp_path: Path, workdir: Path, keep: float) -> None:
    whole = _encode(_noise((200, 200)), "JPEG", quality=95)
    src = _write(tmp_path / "cut.jpg", whole[: int(len(whole) * keep)])
    assert sniff(src.read_bytes()[:16]) == "image/jpeg"

    with pytest.raises(ContentRefused) as refused:  # not OSError, not a Pillow exception
        clean(src, workdir=workdir)

    assert "could not be read" in refused.value.detail
    assert list(workdir.iterdir()) == []


def test_a_jpeg_magic_with_garbage_behind_it_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "fake.jpg", b"\xff\xd8\xff" + b"\x00garbage" * 100)
    with pytest.raises(ContentRefused):
        clean(src, workdir=workdir)


def test_an_image_over_max_pixels_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "big.png", _encode(_two_colour((100, 100)), "PNG"))
    with pytest.raises(ContentRefused) as refused:
        clean(src, workdir=workdir, max_pixels=5_000)
    assert "too large" in refused.value.detail
    assert list(workdir.iterdir()) == []
    assert clean(src, workdir=workdir, max_pixels=10_000).width == 100  # at the limit: kept


def test_the_pixel_count_is_checked_before_decoding(tmp_path: Path, workdir: Path) -> None:
    # 64 megapixels claimed by a header with no pixel data behind it: decoding would fail as "could not be
    # read"; refused as too large means the header was checked first.
    src = _write(tmp_path / "bomb.png", _png_header_only(8000, 8000))
    with pytest.raises(ContentRefused) as refused:
        clean(src, workdir=workdir)
    assert "too large" in refused.value.detail


def test_a_decompression_bomb_pillow_catches_is_refused_too(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "bomb.png", _png_header_only(100_000, 100_000))
    with pytest.raises(ContentRefused) as refused:
        clean(src, workdir=workdir, max_pixels=10**12)
    assert "too large" in refused.value.detail


# -- formats ----------------------------------------------------------------------------------------


def test_webp_round_trip(tmp_path: Path, workdir: Path) -> None:
    image = _two_colour(mode="RGBA")
    ImageDraw.Draw(image).rectangle((0, 0, 9, 9), fill=(0, 0, 0, 0))
    src = _write(tmp_path / "a.webp", _encode(image, "WEBP", quality=90, exif=_gps_exif()))

    result = clean(src, workdir=workdir)

    assert result.content_type == "image/webp"
    assert (result.width, result.height) == (40, 20)
    data = _assert_described(result)
    assert b"EXIF" not in data
    _assert_no_metadata(result)
    with Image.open(result.path) as out:
        assert out.format == "WEBP" and out.mode == "RGBA"
        assert out.getpixel((2, 2))[3] == 0
        red = out.getpixel((15, 15))
        assert red[0] > 200 and red[3] == 255


def test_only_the_first_frame_of_an_animation_is_kept(tmp_path: Path, workdir: Path) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue", "green")]
    for fmt, name in (("WEBP", "anim.webp"), ("PNG", "anim.png")):
        src = _write(tmp_path / name, _encode(frames[0], fmt, save_all=True, append_images=frames[1:]))
        with Image.open(src) as original:
            assert original.n_frames == 3

        result = clean(src, workdir=workdir)

        with Image.open(result.path) as out:
            assert getattr(out, "n_frames", 1) == 1
            assert out.getpixel((8, 8))[0] > 200
        assert b"acTL" not in result.path.read_bytes() and b"ANIM" not in result.path.read_bytes()


def test_heic_comes_out_as_jpeg(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "IMG_0001.HEIC", _encode(_two_colour(), "HEIF", exif=_gps_exif().tobytes()))
    with Image.open(src) as original:
        assert original.getexif()[MODEL] == CAMERA_MODEL

    result = clean(src, workdir=workdir)

    assert result.content_type == "image/jpeg"
    assert result.path.suffix == ".jpg"
    data = _assert_described(result)
    assert data.startswith(b"\xff\xd8\xff")
    _assert_no_metadata(result)
    with Image.open(result.path) as out:
        assert out.format == "JPEG" and out.size == (40, 20)
        assert out.getpixel((5, 10))[0] > 200


def test_a_transparent_heic_is_flattened_onto_white(tmp_path: Path, workdir: Path) -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((16, 0, 31, 31), fill=(255, 0, 0, 255))
    src = _write(tmp_path / "a.heic", _encode(image, "HEIF"))

    result = clean(src, workdir=workdir)

    with Image.open(result.path) as out:
        assert out.mode == "RGB"
        assert min(out.getpixel((4, 16))) > 230  # transparent became white, not black
        assert out.getpixel((28, 16))[0] > 200


def test_a_pdf_is_kept_byte_for_byte(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "report.bin", MINIMAL_PDF)

    result = clean(src, workdir=workdir)

    assert result.content_type == "application/pdf"
    assert result.path.read_bytes() == MINIMAL_PDF
    assert result.sha256 == hashlib.sha256(MINIMAL_PDF).hexdigest()
    assert result.size == len(MINIMAL_PDF)
    assert (result.width, result.height) == (None, None)
    assert result.path.parent == workdir and result.path != src


def test_a_pdf_larger_than_a_chunk_is_hashed_whole(tmp_path: Path, workdir: Path) -> None:
    body = MINIMAL_PDF + b"%" + bytes(range(256)) * (_content.CHUNK_BYTES // 256 * 2 + 3)
    src = _write(tmp_path / "big.pdf", body)
    result = clean(src, workdir=workdir)
    assert result.size == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()


def test_cleaned_is_frozen(tmp_path: Path, workdir: Path) -> None:
    result = clean(_write(tmp_path / "a.pdf", MINIMAL_PDF), workdir=workdir)
    with pytest.raises(AttributeError):
        result.size = 1  # type: ignore[misc]


# -- thumbnails -------------------------------------------------------------------------------------


def test_a_jpeg_thumbnail_fits_the_box_keeps_the_aspect_and_decodes_small(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "wide.jpg", _encode(_two_colour((2000, 1000)), "JPEG", exif=_gps_exif()))
    drafts: list[tuple[int, int] | None] = []
    draft = JpegImageFile.draft

    def spy(self: JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        result = draft(self, mode, size)
        drafts.append(self.size)
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)

    result = thumbnail(src, "image/jpeg", workdir=workdir)

    assert result is not None
    assert result.content_type == "image/jpeg"
    assert (result.width, result.height) == (320, 160)
    assert drafts and max(drafts[0]) <= 1000  # decoded at half scale or less, not at full size
    _assert_described(result)
    _assert_no_metadata(result)
    with Image.open(result.path) as out:
        assert out.size == (320, 160)


def test_a_thumbnail_applies_the_orientation(tmp_path: Path, workdir: Path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    src = _write(tmp_path / "p.jpg", _encode(_two_colour((800, 400)), "JPEG", exif=exif))
    result = thumbnail(src, "image/jpeg", workdir=workdir, box=100)
    assert result is not None and (result.width, result.height) == (50, 100)


def test_a_transparent_thumbnail_is_a_png(tmp_path: Path, workdir: Path) -> None:
    image = _two_colour((500, 1000), mode="RGBA")
    ImageDraw.Draw(image).rectangle((0, 0, 99, 99), fill=(0, 0, 0, 0))
    src = _write(tmp_path / "tall.png", _encode(image, "PNG"))

    result = thumbnail(src, "image/png", workdir=workdir, box=200)

    assert result is not None
    assert result.content_type == "image/png"
    assert (result.width, result.height) == (100, 200)
    _assert_described(result)
    with Image.open(result.path) as out:
        assert out.mode == "RGBA" and out.size == (100, 200)
        assert out.getpixel((2, 2))[3] == 0


def test_a_heic_thumbnail(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "a.heic", _encode(_two_colour((640, 480)), "HEIF"))
    result = thumbnail(src, "image/heic", workdir=workdir)
    assert result is not None
    assert result.content_type == "image/jpeg" and (result.width, result.height) == (320, 240)


def test_a_small_picture_is_not_enlarged(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "small.webp", _encode(_two_colour((40, 20)), "WEBP"))
    result = thumbnail(src, "image/webp", workdir=workdir)
    assert result is not None and (result.width, result.height) == (40, 20)


def test_a_pdf_has_no_thumbnail(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "a.pdf", MINIMAL_PDF)
    assert thumbnail(src, "application/pdf", workdir=workdir) is None
    assert list(workdir.iterdir()) == []


def test_a_thumbnail_of_content_that_is_not_its_type_is_refused(tmp_path: Path, workdir: Path) -> None:
    src = _write(tmp_path / "photo.jpg", _a_zip())
    with pytest.raises(ContentRefused):
        thumbnail(src, "image/jpeg", workdir=workdir)
    with pytest.raises(ContentRefused):
        thumbnail(src, "application/zip", workdir=workdir)
