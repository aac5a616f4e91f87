"""Image loading on a corpus of bad and unusual files made in the test, and video frame sampling."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from gazeclip_cli.core.data.images import (
    MAX_IMAGE_FILE_BYTES,
    decode_image,
    display_path,
    frame_indices,
    load_image,
    read_image_bytes,
    read_video_frames,
    sample_video_frames,
)
from gazeclip_cli.core.errors import InputError
from tests.image_bytes import png_declaring


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1).astype(
        np.uint8
    )


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (its data is one tiny row)."""
    return png_declaring(width, height)


def _save(tmp_path, name: str, im: Image.Image, **kw) -> str:
    path = tmp_path / name
    im.save(path, **kw)
    return str(path)


# --- files that must be refused, each with its reason -------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        ("notes.png", lambda p: p.write_text("these are not pixels\n" * 20), "not an image"),
        ("html.jpg", lambda p: p.write_bytes(b"<!DOCTYPE html><html></html>"), "not an image"),
        ("bomb.png", lambda p: p.write_bytes(_png_with_size(100_000, 100_000)), "too large to decode safely"),
    ],
)
def test_bad_files_are_refused_with_their_reason(tmp_path, name, make, expected):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as info:
        load_image(path)
    message = str(info.value)
    assert expected in message
    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated or corrupt image data"):
        load_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = _save(tmp_path, "big.png", Image.fromarray(_gradient(40, 40)))
    assert load_image(path).shape == (40, 40, 3)
    with pytest.raises(InputError, match="40 x 40 pixels, limit 1,000"):
        load_image(path, max_pixels=1000)


def test_a_file_too_large_for_an_image_is_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_IMAGE_FILE_BYTES + 1)  # sparse: no disk used, and never read
    with pytest.raises(InputError, match=r"huge\.png: file too large for an image \(1,073,741,825 bytes"):
        read_image_bytes(huge)
    small = tmp_path / "small.png"
    Image.fromarray(_gradient()).save(small)
    assert read_image_bytes(small) == small.read_bytes()


def test_missing_file_folder_and_symlink_problems(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    with pytest.raises(InputError, match=r"broken symbolic link \(its target .*gone.png does not exist\)"):
        load_image(tmp_path / "dangling.png")
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    with pytest.raises(InputError, match="symbolic link loop"):
        load_image(tmp_path / "a.png")


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their permissions"
)
def test_unreadable_file(tmp_path):
    path = _save(tmp_path, "locked.png", Image.fromarray(_gradient()))
    os.chmod(path, 0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            load_image(path)
    finally:
        os.chmod(path, 0o644)


def test_unreadable_file_message_when_the_os_refuses(tmp_path, monkeypatch):
    """The same check as above, for runs as root (root reads any file): the OS says no."""
    path = _save(tmp_path, "locked.png", Image.fromarray(_gradient()))
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(InputError, match="locked.png: permission denied"):
        load_image(path)


def test_good_symlink_and_non_utf8_name_load(tmp_path):
    rgb = _gradient()
    target = _save(tmp_path, "real.png", Image.fromarray(rgb))
    os.symlink(target, tmp_path / "link.png")
    assert np.array_equal(load_image(tmp_path / "link.png"), rgb)
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9-\xff.png")  # Latin-1 bytes: not UTF-8
    Image.fromarray(rgb).save(open(raw, "wb"), "PNG")
    name = os.fsdecode(raw)
    assert np.array_equal(load_image(name), rgb)
    assert display_path(name).endswith("caf\\xe9-\\xff.png")
    os.unlink(raw)
    with pytest.raises(InputError) as info:
        load_image(name)
    str(info.value).encode("utf-8")  # the message itself must be printable


# --- colour layouts, all converted to 8-bit RGB ---------------------------------------------------


def test_rgb_png_is_exact(tmp_path):
    rgb = _gradient()
    out = load_image(_save(tmp_path, "rgb.png", Image.fromarray(rgb)))
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    assert np.array_equal(out, rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    grey = _gradient()[:, :, 0]
    out = load_image(_save(tmp_path, "grey.png", Image.fromarray(grey, "L")))
    assert out.shape == (24, 32, 3)
    assert all(np.array_equal(out[:, :, c], grey) for c in range(3))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    grey16 = np.full((8, 8), 32896, np.uint16)  # 50 % grey in 16 bits
    grey16[0, 0] = 65535
    path = str(tmp_path / "g16.png")
    cv2.imwrite(path, grey16)
    out = load_image(path)
    assert out[1, 1].tolist() == [128, 128, 128]
    assert out[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_rgb_keeps_its_colours(tmp_path):
    bgr16 = np.zeros((8, 8, 3), np.uint16)
    bgr16[..., 2] = 65535  # red in OpenCV's BGR order
    bgr16[..., 1] = 32896
    path = str(tmp_path / "c16.png")
    cv2.imwrite(path, bgr16)
    assert load_image(path)[3, 3].tolist() == [255, 128, 0]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink mix
    out = load_image(_save(tmp_path, "cmyk.jpg", cmyk, quality=95))
    r, g, b = out[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_palette_images_expand(tmp_path):
    rgb = _gradient()
    pal = Image.fromarray(rgb).quantize(colors=16)
    out = load_image(_save(tmp_path, "pal.png", pal))
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))
    pal.info["transparency"] = 0  # palette entry 0 becomes transparent
    out = load_image(_save(tmp_path, "pal_t.png", pal, transparency=0))
    idx = np.asarray(pal)
    assert (out[idx == 0] == 0).all()
    assert np.array_equal(out[idx != 0], np.asarray(pal.convert("RGB"))[idx != 0])


def test_alpha_is_composited_onto_black_and_opaque_pixels_stay_exact(tmp_path):
    rgba = np.dstack([_gradient(), np.full((24, 32), 255, np.uint8)])
    rgba[:, :8, 3] = 0
    rgba[:, 8:16, 3] = 128
    out = load_image(_save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    assert (out[:, :8] == 0).all()
    assert np.array_equal(out[:, 16:], rgba[:, 16:, :3])
    half = np.round(rgba[:, 8:16, :3].astype(float) * 128 / 255)
    assert np.abs(out[:, 8:16].astype(float) - half).max() <= 1
    la = Image.fromarray(rgba, "RGBA").convert("LA")
    out = load_image(_save(tmp_path, "la.png", la))
    assert (out[:, :8] == 0).all() and out.shape == (24, 32, 3)


def test_exif_orientation_is_honoured(tmp_path):
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[:4, :4] = (255, 0, 0)  # red marks the stored top-left corner
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = load_image(_save(tmp_path, "rotated.jpg", im, exif=exif.tobytes(), quality=100, subsampling=0))
    assert out.shape == (20, 10, 3)
    # After a clockwise quarter turn the stored top-left corner is at the top right.
    assert out[1, -2, 0] > 200 and out[1, 1, 0] < 50 and out[-2, -2, 0] < 50


def test_decode_image_from_bytes_names_the_source():
    with pytest.raises(InputError, match=r"^upload #3: not an image"):
        decode_image(b"GIF89a-but-not-really", "upload #3")


# --- video frames ---------------------------------------------------------------------------------


def test_frame_indices():
    assert frame_indices(30, frames_per_video=5) == [3, 9, 15, 21, 27]  # the centres of 5 equal parts
    assert frame_indices(4, frames_per_video=10) == [0, 1, 2, 3]
    assert frame_indices(9, frames_per_video=1) == [4]
    assert frame_indices(25, frame_stride=10) == [0, 10, 20]
    assert frame_indices(0, frames_per_video=3) == []
    with pytest.raises(ValueError):
        frame_indices(10, frames_per_video=3, frame_stride=2)


@pytest.fixture
def video(tmp_path) -> str:
    """A 30-frame MJPG video whose frame i is a flat grey of level 8 * i."""
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()
    return path


def test_video_frames_evenly_and_by_stride(video):
    frames = sample_video_frames(video, frames_per_video=5)
    assert [f.frame_index for f in frames] == [3, 9, 15, 21, 27]
    assert all(f.video_id == "clip" for f in frames)
    for f in frames:
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        assert abs(float(f.image.mean()) - 8 * f.frame_index) < 3  # it is the frame it claims to be
    frames = sample_video_frames(video, frame_stride=12, video_id="v001")
    assert [(f.video_id, f.frame_index) for f in frames] == [("v001", 0), ("v001", 12), ("v001", 24)]
    assert [f.frame_index for f in read_video_frames(video, [3, 99])] == [3]


def test_bad_videos(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(os.urandom(2048))
    with pytest.raises(InputError, match="fake.mp4"):
        sample_video_frames(fake, frames_per_video=4)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        sample_video_frames(tmp_path / "empty.mp4", frames_per_video=4)
