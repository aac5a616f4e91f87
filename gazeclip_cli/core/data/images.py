"""Robust loading of evidence images and sampling of video frames.

:func:`load_image` returns an RGB ``uint8`` array of shape (H, W, 3) or raises
:class:`~gazeclip_cli.core.errors.InputError` with one line naming the file and the
problem: missing, empty or truncated files, non-images with image extensions, images too
large to decode safely (decompression bombs), unreadable files, broken symbolic links and
symbolic-link loops. Every colour layout Pillow reads is converted to 8-bit RGB the same
way: EXIF orientation is applied, CMYK goes through its embedded ICC profile when it has
one, 16-bit samples are scaled (not clipped), palettes are expanded and transparent
pixels are composited onto black (opaque pixels keep their exact values, which is what a
forensic model must see). File names that are not valid UTF-8 load normally; messages
show them with the undecodable bytes escaped (:func:`display_path`).

:func:`sample_video_frames` decodes N frames evenly spread over a video (the centres of N
equal parts, :func:`~gazeclip_cli.core.data.frame_sampling.evenly_spaced`) or every K-th frame, keeping the video id and each
frame's index.
"""

from __future__ import annotations

import errno
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from gazeclip_cli.core.data.frame_sampling import frame_indices
from gazeclip_cli.core.errors import InputError

# Pillow's own decompression-bomb warning threshold, so that the two limits never disagree:
# about 9459 x 9459 pixels, 268 MB once decoded to RGB.
MAX_PIXELS = 89_478_485
# An image file larger than this is refused before it is read (preprocess, attribute, scan).
MAX_IMAGE_FILE_BYTES = 1 << 30

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".jfif"}
)
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
)

PathLike = str | os.PathLike[str]


def display_path(path: PathLike) -> str:
    """``path`` as printable UTF-8 text: bytes that are not valid UTF-8 become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def is_utf8_path(path: PathLike) -> bool:
    """Whether ``path`` can be written to a UTF-8 file unchanged."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_video_path(path: PathLike) -> bool:
    """Whether ``path`` has a video file extension (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_path(path: PathLike) -> bool:
    """Whether ``path`` has an image file extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def check_readable_file(path: PathLike) -> int:
    """Raise :class:`InputError` unless ``path`` is a readable, non-empty regular file.

    Returns:
        The file's size in bytes.
    """
    name = display_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            target = display_path(os.readlink(path))
            raise InputError(
                f"{name}: broken symbolic link (its target {target} does not exist); fix or remove the link"
            ) from None
        raise InputError(f"{name}: file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{name}: symbolic link loop; fix or remove the link") from None
        raise InputError(f"{name}: cannot read ({exc.strerror})") from None
    if os.path.isdir(path):
        raise InputError(f"{name}: is a folder, not an image file")
    if st.st_size == 0:
        raise InputError(f"{name}: empty file (0 bytes); re-copy or remove it")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name}: permission denied; make the file readable (chmod +r)")
    return st.st_size


def check_image_file(path: PathLike) -> int:
    """:func:`check_readable_file`, and refuse a file too large to be an image; returns its size.

    A file over :data:`MAX_IMAGE_FILE_BYTES` is refused before it is read: no photo is this
    big, and reading it whole would exhaust memory before the decoder's pixel limit applies.
    """
    size = check_readable_file(path)
    if size > MAX_IMAGE_FILE_BYTES:
        raise InputError(
            f"{display_path(path)}: file too large for an image ({size:,} bytes, limit {MAX_IMAGE_FILE_BYTES:,})"
        )
    return size


def read_file_bytes(path: PathLike) -> bytes:
    """The whole content of an input file, after the checks of :func:`check_readable_file`."""
    check_readable_file(path)
    return _read(path)


def read_image_bytes(path: PathLike) -> bytes:
    """The whole content of an image file, after the checks of :func:`check_image_file`."""
    check_image_file(path)
    return _read(path)


def _read(path: PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except PermissionError:
        raise InputError(
            f"{display_path(path)}: permission denied; make the file readable (chmod +r)"
        ) from None
    except OSError as exc:
        raise InputError(f"{display_path(path)}: cannot read ({exc.strerror})") from None


def load_image(path: PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image file as RGB ``uint8`` (H, W, 3).

    Args:
        path: the image file.
        max_pixels: images with more pixels than this are refused before decoding.

    Raises:
        InputError: the file is missing, empty, unreadable, not an image, truncated or too large.
    """
    return decode_image(read_file_bytes(path), display_path(path), max_pixels=max_pixels)


def decode_image(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image file content to RGB ``uint8`` (H, W, 3); ``name`` is used in error messages.

    Args:
        data: the encoded file content.
        name: how to name the file in an error message.
        max_pixels: images with more pixels than this are refused before decoding.

    Raises:
        InputError: the content is empty, not an image, truncated or too large.
    """
    if not data:
        raise InputError(f"{name}: empty file (0 bytes); re-copy or remove it")
    with warnings.catch_warnings():
        # Pillow warns (instead of refusing) between its limit and twice its limit: refuse there too
        # unless the caller allows more; either way nothing is printed.
        action = "error" if max_pixels <= MAX_PIXELS else "ignore"
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise InputError(f"{name}: not an image (its content is no format Pillow can decode)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(
                f"{name}: image too large to decode safely (more than {max_pixels:,} pixels); downscale it first"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes is an input problem
            raise InputError(f"{name}: corrupt image header ({_reason(exc)})") from None
        width, height = im.size
        if width <= 0 or height <= 0:
            raise InputError(f"{name}: image has no pixels ({width} x {height})")
        if width * height > max_pixels:
            raise InputError(
                f"{name}: image too large to decode safely ({width} x {height} pixels, limit {max_pixels:,});"
                " downscale it first"
            )
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im, name)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data, whatever the codec says
            raise InputError(
                f"{name}: truncated or corrupt image data ({_reason(exc)}); re-copy the file"
            ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (H, W, 3)."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        # Pillow reads 16-bit grey as I;16 (or I); scale 0..65535 to 0..255 instead of clipping at 255.
        peak = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise InputError(f"{name}: 32-bit integer images are not supported; convert to 8-bit or 16-bit")
        grey = np.round(arr * (255.0 / peak)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0  # [0, 1] floats vs 0..255 floats
        grey = np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                return np.asarray(
                    ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
                )
            except (ImageCms.PyCMSError, OSError, ValueError):
                pass  # a broken profile: fall back to Pillow's plain CMYK -> RGB formula
        return np.asarray(im.convert("RGB"))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[:, :, 3:4]
        # Composite onto black: (c * a + 127) // 255 keeps opaque pixels exact.
        return ((rgba[:, :, :3] * alpha + 127) // 255).astype(np.uint8)
    if mode == "RGB":
        return np.asarray(im)
    return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class VideoFrame:
    """One decoded video frame."""

    video_id: str  # id of the source video
    frame_index: int  # 0-based index of the frame in the video's decoding order
    image: np.ndarray  # RGB uint8 (H, W, 3)


def _open_video(path: PathLike) -> cv2.VideoCapture:
    check_readable_file(path)
    name = display_path(path)
    if not is_utf8_path(path):
        raise InputError(
            f"{name}: OpenCV cannot open video files whose names are not valid UTF-8; rename the file"
        )
    cap = cv2.VideoCapture(os.fspath(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{name}: not a video OpenCV can decode (unknown format or corrupt file)")
    return cap


def count_video_frames(path: PathLike) -> int:
    """Number of decodable frames in a video (from the container, or by decoding when it does not say)."""
    cap = _open_video(path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:
            return count
        # Some containers do not store a frame count: count by demuxing every frame.
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def iter_video_frames(
    path: PathLike, indices: Sequence[int], *, video_id: str | None = None
) -> Iterator[VideoFrame]:
    """Decode the frames at ``indices`` (0-based) of a video, one at a time, in index order.

    Frames are read sequentially (``grab`` skips the rest without colour conversion) because
    seeking is frame-inaccurate for many codecs. Indices past the end of the video are not
    yielded. Only one decoded frame is held at a time, so long videos stream.

    Args:
        path: the video file.
        indices: the frame indices wanted.
        video_id: id stored with each frame; the file name without extension by default.

    Raises:
        InputError: the video cannot be opened.
    """
    vid = video_id if video_id else Path(display_path(path)).stem
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    cap = _open_video(path)
    try:
        pending = iter(wanted)
        target = next(pending)
        index = 0
        while target >= 0 and cap.grab():
            if index == target:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    yield VideoFrame(vid, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                target = next(pending, -1)
            index += 1
    finally:
        cap.release()


def read_video_frames(
    path: PathLike, indices: Sequence[int], *, video_id: str | None = None
) -> list[VideoFrame]:
    """All frames at ``indices`` of a video (see :func:`iter_video_frames`).

    Raises:
        InputError: the video cannot be opened, or none of the wanted frames decodes.
    """
    frames = list(iter_video_frames(path, indices, video_id=video_id))
    if indices and not frames:
        raise InputError(f"{display_path(path)}: no frame could be decoded (corrupt or empty video)")
    return frames


def sample_video_frames(
    path: PathLike,
    *,
    frames_per_video: int | None = None,
    frame_stride: int | None = None,
    video_id: str | None = None,
) -> list[VideoFrame]:
    """Decode frames of a video, N spread evenly or every K-th.

    Args:
        path: the video file.
        frames_per_video: N frames spread evenly (the centres of N equal parts; all when shorter).
        frame_stride: every K-th frame, from frame 0.
        video_id: id stored with each frame; the file name without extension by default.

    Raises:
        InputError: the video cannot be opened or has no decodable frame.
    """
    count = count_video_frames(path)
    if count == 0:
        raise InputError(f"{display_path(path)}: video has no frames")
    idx = frame_indices(count, frames_per_video=frames_per_video, frame_stride=frame_stride)
    return read_video_frames(path, idx, video_id=video_id)
