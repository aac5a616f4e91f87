"""Face detection (MTCNN), the face choice policy, the network's 256 x 256 crop, and aligned mode.

Detection. :class:`FaceDetector` runs the MTCNN cascade (P-Net proposals over an image
pyramid, R-Net refinement, O-Net boxes and 5 landmarks) with the networks and weights that
ship in the facenet-pytorch wheel, on a batch of images of one size at a time: every
pyramid level is one P-Net call for the whole batch; every resampling (pyramid levels,
the 24 and 48 pixel candidate crops) is an area average read from the image's integral
image in one vectorised pass, instead of one resize per level and per candidate; the
networks run with channels-last weights. Pyramid, crops, thresholds and box arithmetic
are MTCNN's as facenet-pytorch implements them, so boxes and landmarks equal
``facenet_pytorch.MTCNN.detect``'s (to float rounding); ``scripts/bench_preprocess.py``
measures the speed.
Landmarks come in MTCNN's order: image-left eye centre, image-right eye centre, nose tip,
image-left mouth corner, image-right mouth corner.

Face choice (:func:`select_faces`): ``largest`` (default) keeps the face with the largest
box area, the subject of a portrait even when a bystander scores higher; ``score`` keeps
the face MTCNN is most confident about; ``all`` keeps every face, largest first.

Crop (:func:`crop_box`, :func:`crop_face`): the square centred on the face box whose side
is the box's longer side times ``1 + 2 * margin`` (margin 0.25: a quarter of the box on
each side), zero-padded where it leaves the image, resized to 256 x 256 (area averaging
when shrinking, bilinear when enlarging). With margin 0.25 an MTCNN box covers about two
thirds of the crop, close to the framing of CelebA-HQ / FFHQ-aligned faces.

Aligned mode (:func:`aligned_face`): for datasets whose images already are aligned face
crops (GenFace's 256 x 256 faces, CelebA-HQ, FFHQ, the demo's renders) nothing is
detected: the largest centred square of the image is the face and the 5 landmarks come
from a template, :func:`aligned_template`. The default template places
:data:`~gazeclip_cli.core.data.gaze_normalization.FACE_MODEL_MM` seen from the front by the
CelebA-HQ / FFHQ alignment rule (the rule both datasets were cut with): with ``e`` the
eye-to-eye vector and ``m`` the vector from the eyes' midpoint to the mouth's midpoint,
the crop is the square of side ``2 * max(2 |e|, 1.8 |m|)`` centred at
``eye midpoint + 0.1 m``. For a 256 x 256 image this gives eye centres at (96.5, 120.9)
and (159.5, 120.9), the nose tip at (128.0, 160.6) and the mouth corners at (107.2, 192.0)
and (148.8, 192.0). A caller with a different alignment passes its own template.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

from gazeclip_cli.core.data.gaze_normalization import FACE_MODEL_MM
from gazeclip_cli.core.data.mtcnn_nets import ONet, PNet, RNet, batched_nms

FacePolicy = Literal["largest", "score", "all"]
FACE_POLICIES: tuple[str, ...] = ("largest", "score", "all")
CROP_SIZE = 256
CROP_MARGIN = 0.25


@dataclass(frozen=True)
class Face:
    """One face: box, detector confidence and 5 landmarks, in source-image pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float | None  # MTCNN's O-Net probability; None in aligned mode (nothing was detected)
    landmarks: np.ndarray  # (5, 2) float64, MTCNN order

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def select_faces(faces: Sequence[Face], policy: FacePolicy = "largest") -> list[Face]:
    """Apply the face choice policy (see the module docstring); ``[]`` when there is no face."""
    if policy not in FACE_POLICIES:
        raise ValueError(f"unknown face policy '{policy}' (known: {', '.join(FACE_POLICIES)})")
    if not faces:
        return []
    by_area = sorted(faces, key=lambda f: (f.area, f.score or 0.0), reverse=True)
    if policy == "all":
        return by_area
    if policy == "largest":
        return by_area[:1]
    return [max(faces, key=lambda f: (f.score or 0.0, f.area))]


class FaceDetector:
    """Batched MTCNN face detector.

    Args:
        device: where the three networks run (``"cpu"``, ``"cuda"``, ...).
        min_face_size: smallest face searched for, in pixels.
        thresholds: P-Net, R-Net and O-Net face-probability thresholds.
        pyramid_factor: scale ratio between pyramid levels.

    The networks are built and their weights read (from the facenet-pytorch wheel) here,
    never at import.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        pyramid_factor: float = 0.709,
    ) -> None:
        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.pyramid_factor = pyramid_factor
        # Channels-last weights: the three small networks run about twice as fast on a CPU.
        self.pnet = PNet().to(self.device, memory_format=torch.channels_last).eval()
        self.rnet = RNet().to(self.device, memory_format=torch.channels_last).eval()
        self.onet = ONet().to(self.device, memory_format=torch.channels_last).eval()

    def detect(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[list[Face]]:
        """Detect faces in RGB uint8 images; images of one size are processed together.

        Args:
            images: (H, W, 3) uint8 RGB arrays, any mix of sizes.
            batch_size: at most this many images go through the networks together.

        Returns:
            For each image, its faces sorted by score, highest first (``[]`` when none).
        """
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape), []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                for i, faces in zip(chunk, self._detect_same_size([images[i] for i in chunk]), strict=True):
                    results[i] = faces
        return results

    def detect_one(self, image: np.ndarray) -> list[Face]:
        """Faces of one RGB uint8 image, highest score first."""
        return self.detect([image])[0]

    def _scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face_size  # P-Net sees 12 x 12 windows
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.pyramid_factor
            side *= self.pyramid_factor
        return scales

    @torch.inference_mode()
    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        for img in images:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected (H, W, 3) uint8 RGB images, got {img.shape} {img.dtype}")
        n = len(images)
        height, width = images[0].shape[:2]
        dev = self.device
        # Every resampling below (pyramid levels, candidate crops) is an area average read
        # from these: exact sums, so results equal MTCNN's adaptive_avg_pool2d resizes.
        integrals = [_integral(img) for img in images]

        # Stage 1: P-Net over the pyramid; one call per level for the whole batch.
        boxes, scores, regs, owners = [], [], [], []
        for s in self._scales(height, width):
            hs, ws = int(height * s + 1), int(width * s + 1)  # MTCNN's level size
            level = np.stack([_area_resize(ii, hs, ws) for ii in integrals])  # (B, hs, ws, 3)
            x = _normalise(torch.from_numpy(level).to(dev).permute(0, 3, 1, 2))  # (B, 3, hs, ws), NHWC memory
            reg, prob = self.pnet(x)  # (B, 4, h', w'), (B, 2, h', w')
            b, yy, xx = torch.nonzero(prob[:, 1] >= self.thresholds[0], as_tuple=True)
            if b.numel() == 0:
                continue
            # Each output cell is a 12 x 12 window at stride 2 in the level's pixels, written in
            # MTCNN's original 1-based inclusive convention, which the later stages' regressors assume.
            cell = torch.floor(
                torch.stack([xx * 2 + 1, yy * 2 + 1, xx * 2 + 12, yy * 2 + 12], dim=1).float() / s
            )
            sc = prob[b, 1, yy, xx]
            keep = batched_nms(cell, sc, b, 0.5)
            boxes.append(cell[keep])
            scores.append(sc[keep])
            regs.append(reg[b, :, yy, xx][keep])  # (N, 4)
            owners.append(b[keep])
        if not boxes:
            return [[] for _ in range(n)]
        box, sc, reg, own = torch.cat(boxes), torch.cat(scores), torch.cat(regs), torch.cat(owners)
        keep = batched_nms(box, sc, own, 0.7)
        box, own = _square(_regress(box[keep], reg[keep], inclusive=False)), own[keep]

        # Stage 2: R-Net on 24 x 24 crops of the candidates.
        reg, prob = self.rnet(self._crops(integrals, box, own, 24))  # (N, 4), (N, 2)
        ok = prob[:, 1] > self.thresholds[1]
        box, sc, reg, own = box[ok], prob[ok, 1], reg[ok], own[ok]
        if box.numel() == 0:
            return [[] for _ in range(n)]
        keep = batched_nms(box, sc, own, 0.7)
        box, own = _square(_regress(box[keep], reg[keep])), own[keep]

        # Stage 3: O-Net on 48 x 48 crops: final boxes and landmarks.
        reg, marks, prob = self.onet(self._crops(integrals, box, own, 48))  # (N, 4), (N, 10), (N, 2)
        ok = prob[:, 1] > self.thresholds[2]
        box, sc, reg, marks, own = box[ok], prob[ok, 1], reg[ok], marks[ok], own[ok]
        wh = (box[:, 2:4] - box[:, 0:2] + 1).unsqueeze(1)  # (N, 1, 2), inclusive box size
        # O-Net gives the 5 x coordinates then the 5 y coordinates, relative to the crop.
        points = box[:, None, 0:2] - 1 + wh * torch.stack([marks[:, :5], marks[:, 5:]], dim=2)  # (N, 5, 2)
        box = _regress(box, reg)
        keep = _nms_min(box, sc, own, 0.7)
        box, sc, points, own = box[keep].cpu(), sc[keep].cpu(), points[keep].cpu(), own[keep].cpu()

        results: list[list[Face]] = [[] for _ in range(n)]
        for j in torch.argsort(sc, descending=True).tolist():
            results[int(own[j])].append(
                Face(
                    box=tuple(float(v) for v in box[j]),  # type: ignore[arg-type]
                    score=float(sc[j]),
                    landmarks=points[j].double().numpy(),
                )
            )
        return results

    def _crops(
        self, integrals: list[np.ndarray], box: torch.Tensor, owner: torch.Tensor, size: int
    ) -> torch.Tensor:
        """(N, 3, size, size) normalised crops of the candidate boxes, one vectorised pass per image.

        Same pixels as MTCNN's crop-then-area-resize, read from the image's integral image
        instead of resizing every candidate on its own. As in facenet-pytorch, a box is
        first clipped to the image.
        """
        out = np.empty((box.shape[0], size, size, 3), np.float32)
        boxes = box.trunc().long().cpu().numpy()
        owners = owner.cpu().numpy()
        for i in np.unique(owners):
            sel = owners == i
            height, width = integrals[i].shape[0] - 1, integrals[i].shape[1] - 1
            # 1-based inclusive box [x0, x1] -> 0-based half-open pixel range [x0 - 1, x1), clipped.
            b = boxes[sel]
            x0 = np.minimum(np.maximum(b[:, 0], 1) - 1, width - 1)
            y0 = np.minimum(np.maximum(b[:, 1], 1) - 1, height - 1)
            x1 = np.maximum(np.minimum(b[:, 2], width), x0 + 1)
            y1 = np.maximum(np.minimum(b[:, 3], height), y0 + 1)
            out[sel] = _area_means(integrals[i], *_bins(y0, y1 - y0, size), *_bins(x0, x1 - x0, size))
        return _normalise(torch.from_numpy(out).to(self.device).permute(0, 3, 1, 2))  # NHWC memory


def _integral(image: np.ndarray) -> np.ndarray:
    """(H + 1, W + 1, 3) pixel sums over [0, y) x [0, x): int32 while they fit, float64 beyond (exact)."""
    h, w = image.shape[:2]
    return cv2.integral(image, sdepth=cv2.CV_32S if h * w * 255 < 2**31 else cv2.CV_64F)


def _bins(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pooling bins of n ranges: bin i of [start, start + L) is [floor(i L / S), ceil((i + 1) L / S)).

    Returns (n, size) first and past-the-last indices.
    """
    steps = np.arange(size)
    lo = start[:, None] + (steps[None] * length[:, None]) // size
    hi = start[:, None] - (-(steps[None] + 1) * length[:, None]) // size
    return lo, hi


def _area_resize(integral: np.ndarray, height: int, width: int) -> np.ndarray:
    """The whole image area-resized to (height, width, 3) float32: row bins first, then columns."""
    (r0,), (r1,) = _bins(np.zeros(1, np.int64), np.array([integral.shape[0] - 1]), height)
    (c0,), (c1,) = _bins(np.zeros(1, np.int64), np.array([integral.shape[1] - 1]), width)
    band = np.take(integral, r1, axis=0) - np.take(integral, r0, axis=0)  # (height, W + 1, 3) row-bin sums
    total = np.take(band, c1, axis=1) - np.take(band, c0, axis=1)  # (height, width, 3)
    inverse = (1.0 / ((r1 - r0)[:, None] * (c1 - c0)[None, :])).astype(np.float32)
    return total.astype(np.float32) * inverse[..., None]


def _area_means(
    integral: np.ndarray, r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray
) -> np.ndarray:
    """(n, R, C, 3) float32 means of the bins rows [r0, r1) x columns [c0, c1) of n regions."""
    stride = integral.shape[1]
    flat = integral.reshape(-1, 3)  # one take() per corner on flat indices beats 2-D fancy indexing
    top, bottom = r0[:, :, None] * stride, r1[:, :, None] * stride
    left, right = c0[:, None, :], c1[:, None, :]
    total = (
        np.take(flat, bottom + right, axis=0)
        - np.take(flat, top + right, axis=0)
        - np.take(flat, bottom + left, axis=0)
        + np.take(flat, top + left, axis=0)
    )  # (n, R, C, 3)
    inverse = (1.0 / ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :])).astype(np.float32)
    return total.astype(np.float32) * inverse[..., None]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Pixels 0..255 -> MTCNN's input range [-1, 1)."""
    return (x.float() - 127.5) * (1.0 / 128.0)


def _regress(box: torch.Tensor, reg: torch.Tensor, inclusive: bool = True) -> torch.Tensor:
    """Apply MTCNN's box regression: offsets are fractions of the box's width and height.

    MTCNN measures inclusive sizes (x1 - x0 + 1) after R-Net and O-Net, but not after P-Net.
    """
    wh = (box[:, 2:4] - box[:, 0:2] + (1.0 if inclusive else 0.0)).repeat(1, 2)
    return box + reg * wh


def _square(box: torch.Tensor) -> torch.Tensor:
    """The square with the box's centre and longer side (what R-Net and O-Net expect)."""
    centre = (box[:, 0:2] + box[:, 2:4]) / 2
    half = (box[:, 2:4] - box[:, 0:2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _nms_min(box: torch.Tensor, score: torch.Tensor, owner: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-image NMS where overlap = intersection / smaller area (MTCNN's last step).

    It removes a box nested in a larger, better-scored one, which IoU would keep. Candidate
    counts are small at this stage, so the greedy loop is cheap.
    """
    area = (box[:, 2] - box[:, 0]).clamp(min=0) * (box[:, 3] - box[:, 1]).clamp(min=0)
    keep: list[int] = []
    for i in torch.unique(owner).tolist():
        idx = torch.nonzero(owner == i).flatten()
        order = idx[torch.argsort(score[idx], descending=True)]
        while order.numel():
            j = int(order[0])
            keep.append(j)
            rest = order[1:]
            lo = torch.maximum(box[rest, :2], box[j, :2])
            hi = torch.minimum(box[rest, 2:], box[j, 2:])
            inter = (hi - lo).clamp(min=0).prod(dim=1)
            overlap = inter / torch.minimum(area[rest], area[j]).clamp(min=1e-9)
            order = rest[overlap <= threshold]
    return torch.tensor(keep, dtype=torch.long, device=box.device)


def crop_box(face_box: Sequence[float], margin: float = CROP_MARGIN) -> tuple[float, float, float, float]:
    """The square crop around a face box: same centre, side = longer box side * (1 + 2 * margin)."""
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)


def crop_square(image: np.ndarray, box: Sequence[float], size: int = CROP_SIZE) -> np.ndarray:
    """Cut ``box`` (x0 y0 x1 y1, may leave the image: zero padding) and resize it to ``size`` x ``size``."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    region = np.zeros((y1 - y0, x1 - x0, image.shape[2]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        region[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    shrink = region.shape[0] > size or region.shape[1] > size
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_face(
    image: np.ndarray, face: Face, size: int = CROP_SIZE, margin: float = CROP_MARGIN
) -> np.ndarray:
    """The network's input crop for a detected face: :func:`crop_box` then :func:`crop_square`."""
    return crop_square(image, crop_box(face.box, margin), size)


def aligned_template(size: int = CROP_SIZE) -> np.ndarray:
    """The default 5-landmark template of an aligned ``size`` x ``size`` face, (5, 2) pixels, MTCNN order.

    The generic face model seen from the front, placed by the CelebA-HQ / FFHQ alignment rule
    (see the module docstring).
    """
    return _template(size).copy()


@functools.lru_cache(maxsize=16)
def _template(size: int) -> np.ndarray:
    # Computed once per size: aligned mode asks for it for every image of a scan.
    pts = FACE_MODEL_MM[:, :2]
    eyes = (pts[0] + pts[1]) / 2.0
    eye_to_eye = pts[1] - pts[0]
    eye_to_mouth = (pts[3] + pts[4]) / 2.0 - eyes
    half_side = max(2.0 * np.linalg.norm(eye_to_eye), 1.8 * np.linalg.norm(eye_to_mouth))
    centre = eyes + 0.1 * eye_to_mouth
    template = (pts - centre) / (2.0 * half_side) * size + size / 2.0
    template.setflags(write=False)
    return template


def aligned_face(
    image: np.ndarray, template: np.ndarray | None = None, template_size: int = CROP_SIZE
) -> Face:
    """The face of an already-aligned face image: no detection.

    The largest centred square of the image is the face box (the whole image when square),
    and the landmarks are ``template`` (defined for a ``template_size`` square, default
    :func:`aligned_template`) scaled onto that square.
    """
    h, w = image.shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) / 2.0, (h - side) / 2.0
    tmpl = _template(template_size) if template is None else np.asarray(template, dtype=np.float64)
    marks = tmpl * (side / template_size) + np.array([x0, y0])
    return Face(box=(x0, y0, x0 + side, y0 + side), score=None, landmarks=marks)


def crop_aligned(image: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The network's input crop for an aligned face: the centred square, resized to ``size``."""
    face = aligned_face(image)
    return crop_square(image, face.box, size)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A square RGB ``uint8`` crop (S, S, 3) at the network's image size (size, size, 3).

    The one rule for every reader of crops (``train`` and ``evaluate`` reading the cached
    256 crops, ``attribute`` and ``scan`` preparing faces), so a model sees at inference
    exactly the pixels it was trained on: antialiased bicubic (Pillow's filter) with torch's
    ``uint8`` kernel, which needs no float copy and is about 4x faster than Pillow's
    (``scripts/bench_prepare.py``: 0.12 against 0.44 ms, 256 -> 64). The crop is returned
    unchanged when it already has the size.
    """
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    if not crop.flags.writeable:  # torch warns on read-only arrays (Pillow's); the copy is small
        crop = crop.copy()
    chw = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]  # (1, 3, S, S), channels-last
    out = torch.nn.functional.interpolate(chw, size=(size, size), mode="bicubic", antialias=True)
    return out[0].permute(1, 2, 0).contiguous().numpy()  # (size, size, 3)
