"""Which frames of a video are taken: the one rule for ``build-benchmark``, ``preprocess`` and ``scan``.

Pure Python (no image libraries), so that ``build-benchmark`` stays light.
"""

from __future__ import annotations

DEFAULT_FRAMES_PER_VIDEO = 10  # as the protocol samples its video sets (configs/protocol.toml)


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``: the centre of each of ``k`` equal parts.

    "N frames evenly" means this everywhere: it never takes the very first or last frame,
    where fades and cuts are, and one frame is the middle one. All of ``range(n)`` when
    ``k >= n``.

    >>> evenly_spaced(10, 3)
    [1, 5, 8]
    """
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return [(2 * i + 1) * n // (2 * k) for i in range(k)]


def frame_indices(
    frame_count: int, *, frames_per_video: int | None = None, frame_stride: int | None = None
) -> list[int]:
    """Which frames to take from a video of ``frame_count`` frames.

    Args:
        frame_count: number of frames in the video.
        frames_per_video: take this many frames spread evenly (:func:`evenly_spaced`); all
            frames when the video is shorter.
        frame_stride: take every ``frame_stride``-th frame, starting at frame 0.

    Exactly one of ``frames_per_video`` and ``frame_stride`` must be given.
    """
    if (frames_per_video is None) == (frame_stride is None):
        raise ValueError("give exactly one of frames_per_video and frame_stride")
    if frame_count <= 0:
        return []
    if frame_stride is not None:
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        return list(range(0, frame_count, frame_stride))
    assert frames_per_video is not None
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    return evenly_spaced(frame_count, frames_per_video)
