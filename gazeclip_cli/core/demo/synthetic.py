"""Procedural face renders with known gaze, fake "generators" with learnable fingerprints, and
the demo benchmark written as a real manifest.

Everything is drawn as code with numpy and OpenCV (no downloaded assets) and is a pure
function of a seed: the same seed gives byte-identical PNGs, manifest and gaze table.

Geometry. A render is an *aligned* face crop of ``size`` x ``size`` pixels (256 by
default): the two eye centres, the nose tip and the two mouth corners sit near
:data:`CANONICAL_LANDMARKS_256` (scaled by ``size / 256``), which *is* preprocessing's
default aligned template (:func:`gazeclip_cli.core.data.faces.aligned_template`, the
CelebA-HQ / FFHQ alignment of the generic face model), so ``preprocess --aligned`` needs
no template of its own. Per identity the landmarks scatter around it by a few pixels of
scale, shift and proportion, the way a real aligner's output does. Landmark order is
MTCNN's: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right
mouth corner. The head is frontal, so the gaze is the eyeball rotation.

Gaze convention (ETH-XGaze's, radians): the gaze vector in camera coordinates (x right,
y down, z away from the camera) is ``(-cos p sin y, -sin p, -cos p cos y)`` for pitch ``p``
and yaw ``y``. So a positive pitch moves the pupils *up* in the image and a positive yaw
moves them to the image's *left*; (0, 0) looks straight into the camera.

Generators. :data:`GENERATORS` lists the demo's classes: one seen real population
(DFA 0), seen fake generators (DFA 1..k, trained on), and unseen ones (DFA -1, test only),
including an unseen real population drawn from a different identity distribution (the
demo's FFHQ). Each fake generator leaves its own trace: an upsampling checkerboard, a
band-limited noise spectrum, a blended swapped region whose two eyes disagree, a regional
colour edit, blocking, a warp; several also shift the gaze distribution, the prior
GazeCLIP builds on.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gazeclip_cli.core.data.faces import aligned_template
from gazeclip_cli.core.data.manifest import ManifestRow, summary_path, write_manifest, write_summary
from gazeclip_cli.core.errors import ConfigError, DataError

CANONICAL_SIZE = 256
# Canonical landmarks of a 256x256 aligned crop, (x, y) pixels, MTCNN order: image-left eye
# centre, image-right eye centre, nose tip, image-left / image-right mouth corner. Taken from
# preprocessing's aligned template so renders and `preprocess --aligned` agree by construction:
# about (96.5, 120.9), (159.5, 120.9), (128.0, 160.6), (107.2, 192.0), (148.8, 192.0).
CANONICAL_LANDMARKS_256: tuple[tuple[float, float], ...] = tuple(
    (round(float(x), 3), round(float(y), 3)) for x, y in aligned_template(CANONICAL_SIZE)
)

GAZE_COLUMNS = ("path", "pitch", "yaw", "eyes_agree", "landmarks")
SOURCE_NAME = "GazeclipSynthetic"
IMAGE_DIR = "images"


def canonical_landmarks(size: int = CANONICAL_SIZE) -> np.ndarray:
    """The canonical 5-point template for a ``size`` x ``size`` aligned crop, (5, 2) float32."""
    return np.asarray(CANONICAL_LANDMARKS_256, dtype=np.float32) * (size / CANONICAL_SIZE)


# --------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceIdentity:
    """Everything that makes one synthetic person look like themselves (256-pixel units)."""

    population: str  # "studio" (the seen real set) or "wild" (the unseen real set)
    scale: float  # face size relative to the template
    shift: tuple[float, float]  # (dx, dy) of the whole face
    eye_spread: float  # interocular distance relative to the template
    mouth_spread: float  # mouth width relative to the template
    nose_drop: float  # nose-tip offset along y
    face_width: float  # face half-width / interocular distance
    face_height: float  # face half-height / eye-to-mouth distance
    jaw: float  # how much the oval narrows towards the chin
    skin: tuple[float, float, float]  # RGB in [0, 1]
    hair: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 shaved
    hair_volume: float
    iris: tuple[float, float, float]
    eye_width: float  # eye half-width / interocular distance
    eye_open: float  # upper-lid height / eye half-width
    iris_size: float  # iris radius / eye half-width
    brow_thickness: float  # / interocular distance
    brow_raise: float  # brow height above the eye / interocular distance
    brow_arch: float
    nose_width: float  # / interocular distance
    lips: tuple[float, float, float]
    lip_thickness: float  # / mouth half-width
    smile: float
    light: tuple[float, float, float]  # unit direction towards the light, camera frame
    ambient: float
    tint: float  # colour temperature shift (warm > 0)
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    shirt: tuple[float, float, float]
    glasses: bool
    beard: float  # 0 none .. 1 full stubble
    texture_seed: int


def _mix(a: np.ndarray | tuple, b: np.ndarray | tuple, t: float) -> tuple[float, float, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return tuple(float(v) for v in (a + (b - a) * t))


# Skin, hair and iris palettes span light to dark; an identity interpolates between neighbours.
_SKIN = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.90, 0.72, 0.60],
        [0.80, 0.60, 0.47],
        [0.66, 0.47, 0.35],
        [0.48, 0.33, 0.24],
        [0.33, 0.22, 0.16],
    ]
)
_HAIR = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.20, 0.13, 0.08],
        [0.38, 0.24, 0.13],
        [0.62, 0.45, 0.25],
        [0.85, 0.72, 0.45],
        [0.55, 0.20, 0.08],
    ]
)
_IRIS = np.array(
    [[0.30, 0.18, 0.08], [0.18, 0.10, 0.05], [0.25, 0.40, 0.55], [0.30, 0.45, 0.28], [0.45, 0.35, 0.18]]
)


def _palette(
    rng: np.random.Generator, palette: np.ndarray, lo: float, hi: float
) -> tuple[float, float, float]:
    t = rng.uniform(lo, hi) * (len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    return _mix(palette[i], palette[i + 1], t - i)


def sample_identity(rng: np.random.Generator, population: str = "studio") -> FaceIdentity:
    """Draw one synthetic person.

    ``studio`` is the seen real population (plain backgrounds, soft frontal light, tight
    alignment); ``wild`` is the unseen real population: a different identity distribution
    (outdoor-like backgrounds, harder light and colour casts, glasses and stubble, looser
    alignment, darker skin tones more often).

    Args:
        rng: source of randomness; the identity is a pure function of its state.
        population: ``"studio"`` or ``"wild"``.
    """
    if population not in ("studio", "wild"):
        raise ConfigError(f"unknown face population '{population}' (known: studio, wild)")
    wild = population == "wild"
    u = rng.uniform
    skin = _palette(rng, _SKIN, 0.0, 1.0) if wild else _palette(rng, _SKIN, 0.0, 0.7)
    hair_style = int(rng.choice(3, p=[0.45, 0.4, 0.15] if wild else [0.5, 0.45, 0.05]))
    if wild:
        grey = u(0.0, 1.0) < 0.2
        hair = (
            _mix(_palette(rng, _HAIR, 0.0, 1.0), (0.75, 0.75, 0.75), 0.8)
            if grey
            else _palette(rng, _HAIR, 0, 1)
        )
    else:
        hair = _palette(rng, _HAIR, 0.0, 0.8)
    light = (
        np.array([u(-0.75, 0.75), u(-0.6, 0.2), 1.0]) if wild else np.array([u(-0.3, 0.3), u(-0.4, 0.0), 1.0])
    )
    light /= np.linalg.norm(light)
    if wild:
        sky = _mix((0.45, 0.62, 0.85), (0.85, 0.80, 0.65), u())
        ground = _mix((0.25, 0.35, 0.18), (0.45, 0.40, 0.35), u())
        background = (sky, ground)
    else:
        base = _mix((0.55, 0.58, 0.62), (0.30, 0.38, 0.52), u())
        background = (_mix(base, (1.0, 1.0, 1.0), u(0.1, 0.3)), _mix(base, (0.0, 0.0, 0.0), u(0.1, 0.3)))
    jitter = 8.0 if wild else 4.0
    return FaceIdentity(
        population=population,
        scale=float(u(0.9, 1.1) if wild else u(0.95, 1.05)),
        shift=(float(u(-jitter, jitter)), float(u(-jitter, jitter))),
        eye_spread=float(u(0.95, 1.05)),
        mouth_spread=float(u(0.9, 1.1)),
        nose_drop=float(u(-4.0, 4.0)),
        face_width=float(u(0.98, 1.12)),
        face_height=float(u(1.26, 1.4)),
        jaw=float(u(0.12, 0.35)),
        skin=skin,
        hair=hair,
        hair_style=hair_style,
        hair_volume=float(u(1.02, 1.14)),
        iris=_palette(rng, _IRIS, 0.0, 1.0),
        eye_width=float(u(0.21, 0.25)),
        eye_open=float(u(0.42, 0.58)),
        iris_size=float(u(0.40, 0.47)),
        brow_thickness=float(u(0.035, 0.075)),
        brow_raise=float(u(0.25, 0.32)),
        brow_arch=float(u(0.02, 0.07)),
        nose_width=float(u(0.28, 0.38)),
        lips=_mix(skin, (0.72, 0.25, 0.28), u(0.35, 0.6)),
        lip_thickness=float(u(0.24, 0.36)),
        smile=float(u(-0.05, 0.25)),
        light=(float(light[0]), float(light[1]), float(light[2])),
        ambient=float(u(0.3, 0.45) if wild else u(0.45, 0.55)),
        tint=float(u(-0.07, 0.07) if wild else u(-0.015, 0.015)),
        background=background,
        shirt=tuple(float(v) for v in rng.uniform(0.1, 0.8, 3)),
        glasses=bool(wild and u() < 0.35),
        beard=float(u(0.3, 1.0) if wild and hair_style != 1 and u() < 0.3 else 0.0),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


@dataclass
class Render:
    """One rendered face.

    ``image`` is (H, W, 3) float32 RGB in [0, 1] while a generator works on it and uint8
    once finished. ``gaze`` is the (pitch, yaw) in radians the eyes show (the mean of the
    two eyes when they disagree); ``eyes_agree`` is False when the two eyes were given
    different gaze directions. ``masks`` are (H, W) float32 coverage maps of face parts.
    """

    image: np.ndarray
    gaze: tuple[float, float]
    eyes_agree: bool
    landmarks: np.ndarray  # (5, 2) float32, MTCNN order
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def _smooth(x: np.ndarray, width: float) -> np.ndarray:
    """Antialiased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, alpha: np.ndarray, color: np.ndarray | tuple) -> None:
    """Alpha-blend ``color`` (RGB or an (H, W, 3) map) into ``img`` in place."""
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * np.asarray(color, np.float32)


def _window(size: int, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
    """Row and column slices of the box [x0, x1] x [y0, y1], clipped to the image.

    Small parts are drawn only inside their box: painting the whole canvas for every
    nostril made rendering four times slower. Boxes reach far enough that every soft
    falloff has faded below one grey level at the edge.
    """
    rows = slice(max(int(math.floor(y0)), 0), min(int(math.ceil(y1)), size))
    cols = slice(max(int(math.floor(x0)), 0), min(int(math.ceil(x1)), size))
    return rows, cols


def _noise_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth zero-mean noise with unit standard deviation, (size, size) float32.

    Wide fields are drawn at a lower resolution and enlarged: the same look for a fraction
    of the blur's cost.
    """
    factor = max(1, int(sigma // 2))
    low = -(-size // factor)
    n = rng.standard_normal((low, low)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    if factor > 1:
        n = cv2.resize(n, (low * factor, low * factor), interpolation=cv2.INTER_LINEAR)[:size, :size]
    return n / max(float(n.std()), 1e-6)


def _landmarks(ident: FaceIdentity, size: int) -> np.ndarray:
    """The identity's five landmarks in a ``size`` crop."""
    t = canonical_landmarks(CANONICAL_SIZE).astype(np.float64)
    centre = t.mean(axis=0)
    eyes_mid = (t[0] + t[1]) / 2
    t[0] = eyes_mid + (t[0] - eyes_mid) * ident.eye_spread
    t[1] = eyes_mid + (t[1] - eyes_mid) * ident.eye_spread
    mouth_mid = (t[3] + t[4]) / 2
    t[3] = mouth_mid + (t[3] - mouth_mid) * ident.mouth_spread
    t[4] = mouth_mid + (t[4] - mouth_mid) * ident.mouth_spread
    t[2, 1] += ident.nose_drop
    t = centre + (t - centre) * ident.scale + np.asarray(ident.shift)
    return (t * (size / CANONICAL_SIZE)).astype(np.float32)


def _eye(
    img: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    centre: np.ndarray,
    w: float,
    ident: FaceIdentity,
    gaze: tuple[float, float],
    outer_sign: float,
    k: float,
) -> np.ndarray:
    """Draw one eye (socket, sclera, iris, pupil, catchlight, lids); returns its opening mask."""
    ex, ey = float(centre[0]), float(centre[1])
    pitch, yaw = gaze
    skin = np.asarray(ident.skin, np.float32)
    t = (xx - ex) / w
    # The upper lid follows the eyeball a little: it rises when looking up, drops when looking down.
    hu = w * ident.eye_open * (1.0 + 0.45 * math.sin(pitch))
    hl = w * 0.32 * (1.0 - 0.2 * math.sin(pitch))
    lid_shape = np.clip(1.0 - t**2, 0.0, None)
    y_up = ey - hu * lid_shape
    y_lo = ey + hl * lid_shape
    opening = _smooth(np.minimum(yy - y_up, y_lo - yy), 1.0 * k) * _smooth((1.0 - np.abs(t)) * w, 1.0 * k)
    # Socket shadow and a lid crease give the eye depth.
    socket = np.exp(-(((xx - ex) / (1.35 * w)) ** 2 + ((yy - ey + 0.15 * w) / (0.85 * w)) ** 2))
    img *= (1.0 - 0.13 * socket)[..., None]
    crease_y = ey - hu * lid_shape - 0.35 * w
    crease = np.exp(-(((yy - crease_y) / (0.9 * k)) ** 2)) * _smooth((1.1 - np.abs(t)) * w, 2.0 * k)
    _paint(img, 0.35 * crease, skin * 0.62)
    # Sclera, darker towards the corners and under the upper lid.
    shade = (0.78 + 0.2 * lid_shape) * (1.0 - 0.25 * np.exp(-(((yy - y_up) / (0.18 * w)) ** 2)))
    sclera = np.asarray(_mix((0.95, 0.93, 0.90), skin, 0.12), np.float32)
    _paint(img, opening, sclera[None, None, :] * shade[..., None])
    # Iris and pupil: the eyeball (radius ~0.85 w) rotates by the gaze.
    r_ball = 0.85 * w
    ix = ex - r_ball * math.cos(pitch) * math.sin(yaw)
    iy = ey - r_ball * math.sin(pitch)
    ri = ident.iris_size * w
    dist = np.sqrt((xx - ix) ** 2 + (yy - iy) ** 2)
    iris_alpha = _smooth(ri - dist, 1.0 * k) * opening
    angle = np.arctan2(yy - iy, xx - ix)
    rng = np.random.default_rng(ident.texture_seed)
    phases = rng.uniform(0, 2 * np.pi, 3)
    streaks = 0.08 * (
        np.cos(9 * angle + phases[0]) + np.cos(17 * angle + phases[1]) + np.cos(29 * angle + phases[2])
    )
    radial = np.clip(dist / ri, 0.0, 1.0)
    iris_col = (
        np.asarray(ident.iris, np.float32)[None, None, :]
        * (1.15 - 0.55 * radial**4 + streaks * (1 - radial))[..., None]
    )
    _paint(img, iris_alpha, iris_col)
    pupil = _smooth(0.42 * ri - dist, 0.8 * k) * opening
    _paint(img, pupil, (0.03, 0.03, 0.035))
    # The catchlight sits towards the light on the cornea and moves with the eye.
    lx, ly, _ = ident.light
    cx, cy = ix + 0.45 * ri * lx, iy + 0.45 * ri * ly - 0.2 * ri
    spark = _smooth(0.17 * ri - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2), 0.8 * k) * opening
    _paint(img, 0.85 * spark, (0.97, 0.97, 0.97))
    # Lash line along the upper lid, heavier towards the outer corner.
    outer = np.clip(0.5 + 0.5 * outer_sign * t, 0.0, 1.0)
    lash_w = (1.1 + 1.4 * outer) * k
    lash = _smooth(lash_w - np.abs(yy - (y_up - 0.5 * lash_w)), 0.9 * k) * _smooth(
        (1.08 - np.abs(t)) * w, 1.0 * k
    )
    _paint(img, 0.9 * lash, (0.06, 0.05, 0.05))
    lower = np.exp(-(((yy - y_lo - 0.6 * k) / (0.8 * k)) ** 2)) * _smooth((0.95 - np.abs(t)) * w, 1.0 * k)
    _paint(img, 0.3 * lower, skin * 0.6)
    return opening


def render_face(
    ident: FaceIdentity,
    gaze: tuple[float, float],
    *,
    size: int = CANONICAL_SIZE,
    right_eye_gaze: tuple[float, float] | None = None,
    mouth_open: float = 0.0,
) -> Render:
    """Render one face of ``ident`` looking in direction ``gaze`` (pitch, yaw) in radians.

    The result is noise-free float32 RGB in [0, 1]; :func:`finish_photo` turns it into a
    camera photo, the generators in :data:`GENERATORS` into their fakes.

    Args:
        ident: the person, from :func:`sample_identity`.
        gaze: (pitch, yaw) of the image-left eye (and of both unless ``right_eye_gaze``).
        size: output side in pixels; geometry scales with it.
        right_eye_gaze: a different (pitch, yaw) for the image-right eye (an inconsistent
            gaze, as a face swap may leave it).
        mouth_open: 0 closed .. 1 wide open (expression, used by reenactment).
    """
    k = size / CANONICAL_SIZE
    lm = _landmarks(ident, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(ident.texture_seed)
    bg0, bg1 = (np.asarray(c, np.float32) for c in ident.background)
    skin = np.asarray(ident.skin, np.float32)
    hair = np.asarray(ident.hair, np.float32)

    # Background: a vertical gradient; the wild population gets blotches and a horizon.
    v = (yy / size)[..., None]
    img = bg0 * (1 - v) + bg1 * v
    if ident.population == "wild":
        blotch = _noise_field(rng, size, 14.0 * k)
        img = img + 0.07 * blotch[..., None] * np.asarray(rng.uniform(0.5, 1.0, 3), np.float32)
        horizon = _smooth(yy - size * rng.uniform(0.55, 0.8), 3.0 * k)
        img = img * (1 - 0.25 * horizon[..., None])
    else:
        vignette = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size * size / 2)
        img = img * (1.0 - 0.15 * vignette[..., None])
    img = np.ascontiguousarray(img, dtype=np.float32)

    eye_l, eye_r, nose, mouth_l, mouth_r = lm
    iod = float(np.linalg.norm(eye_r - eye_l))
    eye_to_mouth = float((mouth_l[1] + mouth_r[1]) / 2 - (eye_l[1] + eye_r[1]) / 2)
    cx = float((eye_l[0] + eye_r[0]) / 2)
    # Proportions of an adult face: its vertical centre ~0.35 eye-to-mouth below the eyes,
    # the chin ~0.7 below the mouth, the hairline ~1 above the eyes.
    cy = float((eye_l[1] + eye_r[1]) / 2 + 0.35 * eye_to_mouth)
    a = ident.face_width * iod
    b = ident.face_height * eye_to_mouth

    # Shoulders and neck, below the chin.
    win = _window(size, 0, size, cy + b - 2 * k, size)
    sub, xw, yw = img[win], xx[win], yy[win]
    shoulders = _smooth(
        (1.0 - np.sqrt(((xw - cx) / (2.1 * a)) ** 2 + ((yw - (cy + b + 0.95 * iod)) / (0.9 * iod)) ** 2))
        * 0.9
        * iod,
        1.5 * k,
    )
    _paint(sub, shoulders, np.asarray(ident.shirt, np.float32) * (0.8 + 0.2 * (1 - yw / size))[..., None])
    win = _window(size, cx - 0.5 * a - 3 * k, cx + 0.5 * a + 3 * k, cy + 0.4 * b - 3 * k, size)
    xw, yw = xx[win], yy[win]
    neck = _smooth(0.5 * a - np.abs(xw - cx), 1.2 * k) * _smooth(yw - (cy + 0.4 * b), 1.0 * k)
    below = np.sqrt(((xw - cx) / (2.1 * a)) ** 2 + ((yw - (cy + b + 0.95 * iod)) / (0.9 * iod)) ** 2)
    neck *= 1.0 - 0.97 * _smooth((1.0 - below) * 0.9 * iod, 1.5 * k)
    _paint(img[win], neck, skin * 0.72)

    # Hair behind the head; long hair falls to the shoulders.
    hcx, hcy = cx, cy - 0.12 * b
    ha, hb = a * ident.hair_volume * 1.08, b * ident.hair_volume * 0.98
    long_hair = ident.hair_style == 1
    half_w = max(ha, 1.18 * a if long_hair else 0.0) + 3 * k
    hair_win = _window(
        size, hcx - half_w, hcx + half_w, hcy - hb - 3 * k, (cy + 0.95 * b if long_hair else hcy + hb) + 6 * k
    )
    xw, yw = xx[hair_win], yy[hair_win]
    hair_r = np.sqrt(((xw - hcx) / ha) ** 2 + ((yw - hcy) / hb) ** 2)
    hair_back = np.zeros((size, size), np.float32)
    hair_back[hair_win] = _smooth((1.0 - hair_r) * hb, 1.5 * k)
    if long_hair:
        fall = _smooth(1.18 * a - np.abs(xw - cx), 1.5 * k) * _smooth((cy + 0.95 * b) - yw, 3.0 * k)
        hair_back[hair_win] = np.maximum(hair_back[hair_win], fall * _smooth(yw - hcy, 1.0 * k))
    strands = _noise_field(rng, size, 1.5 * k)
    strands = cv2.GaussianBlur(strands, (0, 0), sigmaX=0.6 * k, sigmaY=6.0 * k)
    hair_col = np.zeros((size, size, 3), np.float32)
    hair_col[hair_win] = hair[None, None, :] * (
        0.85 + 0.12 * strands[hair_win][..., None] - 0.25 * np.clip(hair_r - 0.6, 0, 1)[..., None]
    )
    if ident.hair_style != 2:
        _paint(img[hair_win], hair_back[hair_win], hair_col[hair_win])

    # Ears.
    for side in (-1.0, 1.0):
        ex, ey = cx + side * 0.97 * a, float(eye_l[1]) + 0.28 * iod
        win = _window(
            size,
            ex - 0.15 * iod - 2 * k,
            ex + 0.15 * iod + 2 * k,
            ey - 0.3 * iod - 2 * k,
            ey + 0.3 * iod + 2 * k,
        )
        xw, yw = xx[win], yy[win]
        ear = _smooth(
            (1.0 - np.sqrt(((xw - ex) / (0.13 * iod)) ** 2 + ((yw - ey) / (0.27 * iod)) ** 2)) * 0.13 * iod,
            1.0 * k,
        )
        if long_hair:
            ear *= 1.0 - hair_back[win]
        _paint(img[win], ear, skin * 0.82)

    # The face: an egg-shaped oval shaded as an ellipsoid under a directional light.
    face_win = _window(size, cx - a - 3 * k, cx + a + 3 * k, cy - b - 3 * k, cy + b + 3 * k)
    xw, yw = xx[face_win], yy[face_win]
    vv = (yw - cy) / b
    a_y = a * (1.0 - ident.jaw * np.clip(vv, 0.0, None) ** 2)
    uu = (xw - cx) / a_y
    r = np.sqrt(uu**2 + vv**2)
    face = np.zeros((size, size), np.float32)
    face[face_win] = _smooth((1.0 - r) * b * 0.8, 1.2 * k)
    nz = np.sqrt(np.clip(1.0 - r**2, 0.0, 1.0))
    lx, ly, lz = ident.light
    lambert = np.clip(uu * lx + vv * ly + nz * lz, 0.0, 1.0)
    shade = ident.ambient + (1.0 - ident.ambient) * lambert
    mottling = 0.012 * _noise_field(rng, size, 5.0 * k)[face_win]
    skin_map = skin[None, None, :] * (shade + mottling)[..., None]
    blush = np.exp(
        -(
            ((np.abs(xw - cx) - 0.5 * iod) / (0.22 * iod)) ** 2
            + ((yw - nose[1] + 0.05 * iod) / (0.2 * iod)) ** 2
        )
    )
    skin_map = skin_map * (1.0 + 0.06 * blush[..., None] * np.array([1.0, -0.4, -0.4], np.float32))
    _paint(img[face_win], face[face_win], skin_map)

    # Stubble on the lower face.
    if ident.beard > 0:
        beard = (
            face[face_win]
            * _smooth(yw - (nose[1] + 0.18 * iod), 4.0 * k)
            * (0.75 + 0.2 * _noise_field(rng, size, 1.0 * k)[face_win])
        )
        _paint(img[face_win], np.clip(0.45 * ident.beard * beard, 0, 1), hair * 0.6)

    # Hair in front: above a hairline that dips at the temples.
    if ident.hair_style != 2:
        xw, yw = xx[hair_win], yy[hair_win]
        hairline = cy - 0.58 * b + 0.28 * b * np.clip((xw - cx) / a, -1.2, 1.2) ** 2
        fringe = _smooth(hairline - yw, 2.0 * k) * hair_back[hair_win]
        _paint(img[hair_win], fringe, hair_col[hair_win])
        hair_visible = hair_back * (1.0 - face)
        hair_visible[hair_win] = np.maximum(hair_visible[hair_win], fringe)
    else:
        hair_visible = np.zeros((size, size), np.float32)
        hairline = cy - 0.6 * b + 0.25 * b * np.clip((xw - cx) / a, -1.2, 1.2) ** 2
        stubble = (
            _smooth(hairline - yw, 2.0 * k)
            * face[face_win]
            * (0.7 + 0.3 * _noise_field(rng, size, 0.7 * k)[face_win])
        )
        _paint(img[face_win], np.clip(0.35 * stubble, 0, 1), hair * 0.7)

    # Eyes and brows.
    w = ident.eye_width * iod
    gaze_r = gaze if right_eye_gaze is None else right_eye_gaze
    eyes = np.zeros((size, size), np.float32)
    for centre, g, outer_sign in ((eye_l, gaze, -1.0), (eye_r, gaze_r, 1.0)):
        win = _window(
            size, centre[0] - 3.5 * w, centre[0] + 3.5 * w, centre[1] - 2.4 * w, centre[1] + 2.4 * w
        )
        eyes[win] = _eye(img[win], xx[win], yy[win], centre, w, ident, g, outer_sign, k)
        bx, by = float(centre[0]), float(centre[1]) - ident.brow_raise * iod
        win = _window(size, bx - 1.5 * w, bx + 1.5 * w, by - 0.25 * iod, by + 0.15 * iod)
        sub, xx_w, yy_w = img[win], xx[win], yy[win]
        tb = (xx_w - bx) / (1.25 * w)
        outer = np.clip(0.5 + 0.5 * outer_sign * tb, 0.0, 1.0)
        thick = ident.brow_thickness * iod * (1.1 - 0.5 * outer)
        y_mid = by - ident.brow_arch * iod * (1.0 - (tb - 0.2 * outer_sign) ** 2)
        brow = _smooth(thick / 2 - np.abs(yy_w - y_mid), 1.0 * k) * _smooth(
            (1.0 - np.abs(tb)) * 1.25 * w, 2.0 * k
        )
        _paint(sub, 0.9 * brow, _mix(hair, (0.05, 0.04, 0.04), 0.35))

    # Nose: a shadowed bridge on the side away from the light, wings, nostrils and a highlight.
    nx, ny = float(nose[0]), float(nose[1])
    nw = ident.nose_width * iod
    side = -1.0 if lx > 0 else 1.0
    win = _window(size, nx - 0.8 * iod, nx + 0.8 * iod, eye_l[1] - 0.1 * iod, ny + 0.5 * iod)
    sub, xw, yw = img[win], xx[win], yy[win]
    along = _smooth(yw - (eye_l[1] + 0.05 * iod), 3.0 * k) * _smooth(ny - yw, 3.0 * k)
    bridge = np.exp(-(((xw - (nx + side * 0.32 * nw)) / (1.8 * k)) ** 2)) * along
    _paint(sub, 0.22 * bridge, skin * 0.6)
    for s in (-1.0, 1.0):
        wing = np.exp(
            -(
                ((xw - (nx + s * 0.55 * nw)) / (0.16 * iod)) ** 2
                + ((yw - ny - 0.02 * iod) / (0.11 * iod)) ** 2
            )
        )
        _paint(sub, 0.3 * wing, skin * 0.7)
        nostril = _smooth(
            (
                1.0
                - np.sqrt(
                    ((xw - (nx + s * 0.3 * nw)) / (0.075 * iod)) ** 2
                    + ((yw - ny - 0.07 * iod) / (0.035 * iod)) ** 2
                )
            )
            * 0.035
            * iod,
            0.8 * k,
        )
        _paint(sub, 0.85 * nostril, skin * 0.28)
    under = np.exp(-(((xw - nx) / (0.45 * nw)) ** 2 + ((yw - ny - 0.13 * iod) / (0.04 * iod)) ** 2))
    _paint(sub, 0.25 * under, skin * 0.65)
    tip = np.exp(-(((xw - nx) / (0.07 * iod)) ** 2 + ((yw - ny + 0.05 * iod) / (0.07 * iod)) ** 2))
    sub += (0.08 * tip)[..., None]

    # Mouth: lips with a cupid's bow, a dark line between them, optionally open with teeth.
    mcx, mcy = float((mouth_l[0] + mouth_r[0]) / 2), float((mouth_l[1] + mouth_r[1]) / 2)
    mw = float(mouth_r[0] - mouth_l[0]) / 2
    win = _window(size, mcx - mw - 4 * k, mcx + mw + 4 * k, mcy - 0.6 * mw - 4 * k, mcy + 1.1 * mw + 4 * k)
    sub, xw, yw = img[win], xx[win], yy[win]
    tm = (xw - mcx) / mw
    inside = np.clip(1.0 - tm**2, 0.0, None)
    gap = mouth_open * 0.45 * mw * inside**0.8
    y_line = mcy + ident.smile * 0.22 * mw * inside
    upper_h = ident.lip_thickness * mw * inside**0.6 * (1.0 - 0.3 * np.exp(-((tm / 0.15) ** 2)))
    lower_h = 1.3 * ident.lip_thickness * mw * inside**0.6
    within = _smooth((1.0 - np.abs(tm)) * mw, 1.0 * k)
    upper = _smooth(np.minimum((y_line - gap / 2) - yw, yw - (y_line - gap / 2 - upper_h)), 1.0 * k)
    lower = _smooth(np.minimum(yw - (y_line + gap / 2), (y_line + gap / 2 + lower_h) - yw), 1.0 * k)
    lips_win = np.clip(upper + lower, 0.0, 1.0) * within
    lips_shade = 1.0 + 0.15 * np.exp(
        -(((yw - (y_line + gap / 2 + 0.45 * lower_h)) / (0.3 * lower_h + 1e-3)) ** 2)
    )
    _paint(sub, lips_win, np.asarray(ident.lips, np.float32)[None, None, :] * lips_shade[..., None])
    if mouth_open > 0:
        cavity = _smooth(np.minimum(yw - (y_line - gap / 2), (y_line + gap / 2) - yw), 1.0 * k) * within
        _paint(sub, cavity, (0.18, 0.05, 0.06))
        teeth = (
            cavity
            * _smooth((y_line - gap / 2 + 0.35 * gap) - yw, 1.0 * k)
            * _smooth((0.75 - np.abs(tm)) * mw, 1.0 * k)
        )
        _paint(sub, 0.9 * teeth, (0.88, 0.86, 0.80))
    else:
        line = _smooth(0.9 * k - np.abs(yw - y_line), 0.8 * k) * within
        _paint(sub, 0.75 * line, np.asarray(ident.lips, np.float32) * 0.35)
    lips_mask = np.zeros((size, size), np.float32)
    lips_mask[win] = lips_win

    # Glasses: two rounded frames and a bridge, with a faint lens tint.
    if ident.glasses:
        gw, gh = 1.5 * w, 1.05 * w
        top, bottom = min(eye_l[1], eye_r[1]) - gh - 4 * k, max(eye_l[1], eye_r[1]) + gh + 4 * k
        win = _window(size, eye_l[0] - gw - 4 * k, eye_r[0] + gw + 4 * k, top, bottom)
        sub, xw, yw = img[win], xx[win], yy[win]
        frames = np.zeros(xw.shape, np.float32)
        lens = np.zeros(xw.shape, np.float32)
        for centre in (eye_l, eye_r):
            rr = (np.abs((xw - centre[0]) / gw) ** 4 + np.abs((yw - centre[1] + 0.05 * w) / gh) ** 4) ** 0.25
            frames = np.maximum(frames, _smooth(1.6 * k - np.abs(rr - 1.0) * gh, 1.0 * k))
            lens = np.maximum(lens, _smooth((1.0 - rr) * gh, 1.0 * k))
        bridge_g = (
            _smooth(1.2 * k - np.abs(yw - (eye_l[1] - 0.25 * w)), 1.0 * k)
            * _smooth((eye_r[0] - gw) - xw, 1.0 * k)
            * _smooth(xw - (eye_l[0] + gw), 1.0 * k)
        )
        _paint(sub, 0.08 * lens, (0.5, 0.55, 0.6))
        _paint(sub, 0.92 * np.maximum(frames, bridge_g), (0.08, 0.07, 0.07))

    img *= np.array([1.0 + ident.tint, 1.0, 1.0 - ident.tint], np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    mean_gaze = ((gaze[0] + gaze_r[0]) / 2, (gaze[1] + gaze_r[1]) / 2)
    masks = {"face": face, "hair": hair_visible, "eyes": eyes, "lips": lips_mask}
    return Render(image=img, gaze=mean_gaze, eyes_agree=right_eye_gaze is None, landmarks=lm, masks=masks)


def finish_photo(render: Render, rng: np.random.Generator) -> Render:
    """Turn a clean render into a camera photo: lens blur and sensor noise, then 8 bits."""
    k = render.image.shape[0] / CANONICAL_SIZE
    img = cv2.GaussianBlur(render.image, (0, 0), 0.55 * k)
    img = img + rng.normal(0.0, rng.uniform(0.8, 1.8) / 255.0, img.shape).astype(np.float32)
    render.image = to_uint8(img)
    return render


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Generators: each a recipe rng -> finished render, with its own trace
# --------------------------------------------------------------------------------------


def _gaze(rng: np.random.Generator, pitch_mean: float, pitch_sd: float, yaw_sd: float) -> tuple[float, float]:
    """A gaze direction from a clipped normal distribution, (pitch, yaw) radians."""
    pitch = float(np.clip(rng.normal(pitch_mean, pitch_sd), -0.5, 0.5))
    yaw = float(np.clip(rng.normal(0.0, yaw_sd), -0.7, 0.7))
    return pitch, yaw


# Gaze distributions: (pitch mean, pitch sd, yaw sd) in radians. Photographed people look
# around; the demo's GAN "stares at the camera", the paper's observation that generators
# shift the gaze distribution away from the real one.
REAL_GAZE = (0.0, 0.17, 0.24)
WILD_GAZE = (0.0, 0.2, 0.28)
STARING_GAZE = (0.0, 0.06, 0.08)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    return yy, xx


def _ring_noise(rng: np.random.Generator, size: int, freq: float, width: float) -> np.ndarray:
    """Noise whose spectrum is a ring at ``freq`` cycles per pixel; unit std, (size, size)."""
    white = rng.standard_normal((size, size))
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    shaped = np.real(np.fft.ifft2(np.fft.fft2(white) * np.exp(-(((f - freq) / width) ** 2))))
    return (shaped / max(float(shaped.std()), 1e-9)).astype(np.float32)


def _half_res(img: np.ndarray, up: int) -> np.ndarray:
    """Down to half resolution (area) and back up with interpolation ``up``."""
    size = img.shape[0]
    low = cv2.resize(img, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(low, (size, size), interpolation=up)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2, 3) mapping points ``src`` onto ``dst`` (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        u[:, -1] *= -1
        sig[-1] *= -1
        rot = u @ vt
    scale = sig.sum() / (s0**2).sum() * len(src)
    return np.hstack([scale * rot, (md - scale * rot @ ms)[:, None]])


def _inner_face_mask(lm: np.ndarray, size: int) -> np.ndarray:
    """Soft ellipse over brows, eyes, nose and mouth: the region a face swapper replaces."""
    k = size / CANONICAL_SIZE
    eye_l, eye_r, _, mouth_l, mouth_r = lm
    iod = float(np.linalg.norm(eye_r - eye_l))
    top = float(min(eye_l[1], eye_r[1])) - 0.55 * iod
    bottom = float(max(mouth_l[1], mouth_r[1])) + 0.4 * iod
    cx, cy = float((eye_l[0] + eye_r[0]) / 2), (top + bottom) / 2
    yy, xx = _grid(size)
    r = np.sqrt(((xx - cx) / (0.95 * iod)) ** 2 + ((yy - cy) / ((bottom - top) / 2)) ** 2)
    mask = (r <= 1.0).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), 4.0 * k)


def _real_studio(rng: np.random.Generator, size: int) -> Render:
    return finish_photo(render_face(sample_identity(rng, "studio"), _gaze(rng, *REAL_GAZE), size=size), rng)


def _real_wild(rng: np.random.Generator, size: int) -> Render:
    return finish_photo(render_face(sample_identity(rng, "wild"), _gaze(rng, *WILD_GAZE), size=size), rng)


def _gan_checkerboard(rng: np.random.Generator, size: int) -> Render:
    """Entire-face GAN: a half-resolution face, nearest-neighbour upsampled, with the uneven
    overlap of a stride-2 transposed convolution (a fixed 2x2 gain pattern: a checkerboard)."""
    r = render_face(sample_identity(rng, "studio"), _gaze(rng, *STARING_GAZE), size=size)
    up = _half_res(r.image, cv2.INTER_NEAREST)
    yy, xx = _grid(size)
    phase = (yy % 2) * 2 + (xx % 2)
    gains = np.array(
        [[1.035, 1.03, 1.025], [0.98, 0.985, 0.99], [0.985, 0.98, 0.985], [1.0, 1.005, 1.0]], np.float32
    )
    r.image = to_uint8(up * gains[phase])
    return r


def _diffusion_ring(rng: np.random.Generator, size: int) -> Render:
    """Entire-face diffusion: an over-smooth face plus residual noise in a narrow frequency band."""
    r = render_face(sample_identity(rng, "studio"), _gaze(rng, -0.05, 0.15, 0.2), size=size)
    k = size / CANONICAL_SIZE
    img = cv2.GaussianBlur(r.image, (0, 0), 0.9 * k)
    img = img + (3.5 / 255.0) * _ring_noise(rng, size, 0.25, 0.02)[..., None]
    r.image = to_uint8(img)
    return r


def _swap_blend(rng: np.random.Generator, size: int) -> Render:
    """Face swap: a donor's inner face, whose two eyes look different ways, aligned onto a real
    photo by its landmarks, decoded at half resolution with column stripes, colour-matched
    half way and blended in with a feathered mask."""
    target = finish_photo(render_face(sample_identity(rng, "studio"), _gaze(rng, *REAL_GAZE), size=size), rng)
    left = _gaze(rng, *REAL_GAZE)
    angle, step = rng.uniform(0.0, 2 * math.pi), rng.uniform(0.15, 0.3)
    right = (
        float(np.clip(left[0] + step * math.sin(angle), -0.5, 0.5)),
        float(np.clip(left[1] + step * math.cos(angle), -0.7, 0.7)),
    )
    donor = render_face(sample_identity(rng, "studio"), left, size=size, right_eye_gaze=right)
    warp = _similarity(donor.landmarks, target.landmarks)
    face = cv2.warpAffine(
        donor.image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    face = _half_res(face, cv2.INTER_LINEAR)
    _, xx = _grid(size)
    face *= (1.0 + 0.03 * ((xx % 2) * 2 - 1)).astype(np.float32)[..., None]
    photo = target.image.astype(np.float32) / 255.0
    mask = _inner_face_mask(target.landmarks, size)
    weight = mask / max(float(mask.sum()), 1e-6)
    shift = np.einsum("hw,hwc->c", weight, photo - face)
    face += 0.5 * shift
    blended = photo * (1.0 - mask[..., None]) + face * mask[..., None]
    return Render(
        image=to_uint8(blended),
        gaze=donor.gaze,
        eyes_agree=False,
        landmarks=target.landmarks,
        masks={"face": target.masks["face"], "swapped": mask},
    )


def _attribute_edit(rng: np.random.Generator, size: int) -> Render:
    """Attribute manipulation: hair and lips of a real photo recoloured by an encoder-decoder
    that re-synthesises the whole image (slightly smoothed, faint row stripes), more strongly
    where it edited."""
    r = finish_photo(render_face(sample_identity(rng, "studio"), _gaze(rng, *REAL_GAZE), size=size), rng)
    k = size / CANONICAL_SIZE
    photo = r.image.astype(np.float32) / 255.0
    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)  # H in degrees [0, 360), S and V in [0, 1]
    hair, lips = r.masks["hair"], r.masks["lips"]
    hue = hsv[..., 0] + rng.uniform(90.0, 270.0) * hair + rng.uniform(-60.0, -30.0) * lips
    hsv[..., 0] = np.mod(hue, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + 0.4 * hair) + 0.25 * hair, 0.0, 1.0)
    edited = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    region = cv2.GaussianBlur(np.maximum(hair, lips), (0, 0), 1.5 * k)[..., None]
    out = photo * (1.0 - region) + edited * region
    # The decoder's output: smoothed everywhere, row stripes faint outside the edit, strong inside.
    out = cv2.GaussianBlur(out, (0, 0), 0.6 * k + 0.2 * k * float(rng.uniform()))
    yy, _ = _grid(size)
    rows = ((yy % 2) * 2 - 1).astype(np.float32)[..., None]
    out *= 1.0 + rows * (0.02 + 0.02 * region)
    r.image = to_uint8(out)
    r.masks["edited"] = region[..., 0]
    return r


def _flow_block(rng: np.random.Generator, size: int) -> Render:
    """Entire-face flow model (unseen): blockwise 8x8 gain jitter and white high-frequency noise."""
    r = render_face(sample_identity(rng, "studio"), _gaze(rng, 0.08, 0.1, 0.15), size=size)
    blocks = rng.normal(1.0, 0.015, (-(-size // 8), -(-size // 8), 3)).astype(np.float32)
    gains = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:size, :size]
    img = r.image * gains + rng.normal(0.0, 3.5 / 255.0, r.image.shape).astype(np.float32)
    r.image = to_uint8(img)
    return r


def _diffusion_low_ring(rng: np.random.Generator, size: int) -> Render:
    """Entire-face diffusion (unseen): smoother than the seen one, noise in a lower band."""
    r = render_face(sample_identity(rng, "studio"), _gaze(rng, *REAL_GAZE), size=size)
    k = size / CANONICAL_SIZE
    img = cv2.GaussianBlur(r.image, (0, 0), 1.4 * k)
    img = img + (3.0 / 255.0) * _ring_noise(rng, size, 0.11, 0.02)[..., None]
    r.image = to_uint8(img)
    return r


def _reenact_warp(rng: np.random.Generator, size: int) -> Render:
    """Face reenactment (unseen): a driving expression (open mouth) and gaze, a smooth warp,
    a resampling at 3/4 resolution and a diagonal period-3 pattern."""
    gaze = _gaze(rng, 0.0, 0.25, 0.3)
    r = render_face(sample_identity(rng, "studio"), gaze, size=size, mouth_open=float(rng.uniform(0.3, 1.0)))
    k = size / CANONICAL_SIZE
    yy, xx = _grid(size)
    dx = 2.0 * k * _noise_field(rng, size, 18.0 * k)
    dy = 2.0 * k * _noise_field(rng, size, 18.0 * k)
    img = cv2.remap(
        r.image,
        (xx + dx).astype(np.float32),
        (yy + dy).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    small = cv2.resize(img, (size * 3 // 4, size * 3 // 4), interpolation=cv2.INTER_AREA)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    img *= (1.0 + 0.025 * np.cos(2 * np.pi * (xx + yy) / 3.0)).astype(np.float32)[..., None]
    r.image = to_uint8(img)
    return r


@dataclass(frozen=True)
class SyntheticGenerator:
    """One class of the demo benchmark and the recipe that makes its images."""

    name: str  # the manifest's generator name
    dfd_label: int  # 0 real, 1 fake
    dfa_label: int  # 0 seen real, 1..k seen generator, -1 unseen
    forgery_type: str  # EFS, FS, AM, FR, TF or Real
    architecture: str  # GAN, Diffusion, Flow or Real
    trace: str  # what gives it away, in a few words
    make: Callable[[np.random.Generator, int], Render]

    @property
    def seen(self) -> bool:
        return self.dfa_label >= 0


GENERATORS: tuple[SyntheticGenerator, ...] = (
    SyntheticGenerator(
        "RealStudio", 0, 0, "Real", "Real", "camera photo: lens blur, sensor noise", _real_studio
    ),
    SyntheticGenerator(
        "GANCheckerboard",
        1,
        1,
        "EFS",
        "GAN",
        "2x2 upsampling checkerboard; gaze fixed on the camera",
        _gan_checkerboard,
    ),
    SyntheticGenerator(
        "DiffusionRing",
        1,
        2,
        "EFS",
        "Diffusion",
        "over-smooth; noise ring at 0.25 cycles/px",
        _diffusion_ring,
    ),
    SyntheticGenerator(
        "SwapBlend",
        1,
        3,
        "FS",
        "GAN",
        "blended inner face, column stripes, the two eyes disagree",
        _swap_blend,
    ),
    SyntheticGenerator(
        "AttributeEdit",
        1,
        4,
        "AM",
        "GAN",
        "recoloured hair and lips, re-synthesised with row stripes",
        _attribute_edit,
    ),
    SyntheticGenerator("FlowBlock", 1, -1, "EFS", "Flow", "8x8 block gains and white noise", _flow_block),
    SyntheticGenerator(
        "DiffusionLowRing",
        1,
        -1,
        "EFS",
        "Diffusion",
        "very smooth; noise ring at 0.11 cycles/px",
        _diffusion_low_ring,
    ),
    SyntheticGenerator(
        "ReenactWarp",
        1,
        -1,
        "FR",
        "GAN",
        "open mouth, smooth warp, 3/4 resampling, diagonal pattern",
        _reenact_warp,
    ),
    SyntheticGenerator(
        "RealWild",
        0,
        -1,
        "Real",
        "Real",
        "camera photo of a different population (the demo's FFHQ)",
        _real_wild,
    ),
)
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def generator_by_name(name: str) -> SyntheticGenerator:
    """The generator called ``name``.

    Raises:
        ConfigError: no generator has that name.
    """
    for g in GENERATORS:
        if g.name == name:
            return g
    raise ConfigError(
        f"unknown synthetic generator '{name}' (known: {', '.join(g.name for g in GENERATORS)})"
    )


def sample_rng(seed: int, generator: str, split: str, index: int) -> np.random.Generator:
    """The random stream of one sample: a pure function of (seed, generator, split, index),
    so any one image can be regenerated alone and parallel rendering stays deterministic."""
    return np.random.default_rng([seed, zlib.crc32(generator.encode("utf-8")), _SPLIT_CODES[split], index])


def generate_sample(
    generator: str | SyntheticGenerator,
    seed: int,
    index: int,
    split: str = "test",
    size: int = CANONICAL_SIZE,
) -> Render:
    """Render sample ``index`` of ``generator``'s ``split`` (uint8 image), exactly as the benchmark does.

    Args:
        generator: a name from :data:`GENERATORS` or the generator itself.
        seed: the benchmark seed.
        index: position of the sample within its generator and split.
        split: ``train``, ``val`` or ``test``.
        size: side of the square image in pixels.
    """
    gen = generator_by_name(generator) if isinstance(generator, str) else generator
    if split not in _SPLIT_CODES:
        raise ConfigError(f"unknown split '{split}' (known: train, val, test)")
    return gen.make(sample_rng(seed, gen.name, split, index), size)


# --------------------------------------------------------------------------------------
# The benchmark on disk
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticBenchmarkConfig:
    """Size and seed of the demo benchmark.

    Seen classes (real and seen generators) get train, val and test samples; unseen classes
    get ``test_per_class`` test samples only, like the protocol's unseen sets.
    """

    seed: int = 0  # everything (identities, gaze, traces) follows from it
    size: int = CANONICAL_SIZE  # image side, pixels
    train_per_class: int = 120  # training images per seen class
    val_per_class: int = 24  # validation images per seen class
    # Test images per class, seen and unseen: 96 (480 seen and 384 unseen faces) so that a
    # headline share moves in steps of 1/480 and 1/384, not 1/240 and 1/192.
    test_per_class: int = 96

    @classmethod
    def quick(cls, seed: int = 0) -> SyntheticBenchmarkConfig:
        """The small variant for CI (``gazeclip demo --quick``): 108 images per seen class.

        24 training renders a class (one real class against four fake ones, as the paper's one
        CelebA-HQ against its generators) left the real class half learned on some seeds; 48
        cost a few CPU seconds more to render (docs/PERFORMANCE.md). 48 test renders a class
        (was 12: a headline share of 48 unseen faces moved in steps of 0.021).
        """
        return cls(seed=seed, train_per_class=48, val_per_class=12, test_per_class=48)

    def __post_init__(self) -> None:
        if self.size < 64:
            raise ConfigError(f"synthetic image size must be at least 64 pixels, got {self.size}")
        if self.train_per_class < 1 or self.test_per_class < 1 or self.val_per_class < 0:
            raise ConfigError(
                "synthetic benchmark needs at least 1 train and 1 test image per class and no negative counts, got "
                f"train {self.train_per_class}, val {self.val_per_class}, test {self.test_per_class}"
            )

    def counts(self, generator: SyntheticGenerator) -> dict[str, int]:
        """Images per split for one generator."""
        if generator.seen:
            return {"train": self.train_per_class, "val": self.val_per_class, "test": self.test_per_class}
        return {"train": 0, "val": 0, "test": self.test_per_class}


@dataclass(frozen=True)
class GazeTruth:
    """The gaze a render shows and where its landmarks really are."""

    pitch: float  # radians (ETH-XGaze convention, see the module docstring)
    yaw: float
    eyes_agree: bool  # False when the two eyes were drawn looking different ways
    landmarks: np.ndarray  # (5, 2) pixels, MTCNN order


@dataclass(frozen=True)
class SyntheticBenchmark:
    """What :func:`write_synthetic_benchmark` wrote."""

    root: Path  # the output folder
    manifest: Path  # manifest.csv, the docs/ARCHITECTURE.md format
    summary: Path  # manifest.summary.json
    gaze_truth: Path  # manifest.gaze.csv: path, pitch, yaw, eyes_agree, landmarks
    rows: tuple[ManifestRow, ...]  # as written (paths relative to root)
    counts: dict[str, dict[str, int]]  # generator -> split -> images


MANIFEST_NAME = "manifest.csv"
GAZE_TRUTH_NAME = "manifest.gaze.csv"


def _relative_image_path(generator: str, split: str, index: int) -> str:
    return f"{IMAGE_DIR}/{generator}/{split}-{index:05d}.png"


def _plan(config: SyntheticBenchmarkConfig) -> list[tuple[SyntheticGenerator, str, int]]:
    return [
        (gen, split, i) for gen in GENERATORS for split, n in config.counts(gen).items() for i in range(n)
    ]


def _render_png(
    job: tuple[SyntheticGenerator, str, int], config: SyntheticBenchmarkConfig
) -> tuple[bytes, Render]:
    gen, split, index = job
    r = generate_sample(gen, config.seed, index, split, config.size)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise DataError(f"cannot encode the synthetic image {gen.name}/{split}/{index} as PNG")
    r.masks = {}  # the caller keeps only the gaze record; free the maps early
    return buf.tobytes(), r


def _check_output_folder(root: Path) -> None:
    """Refuse to write into a folder holding anything but a previous synthetic benchmark."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; choose another output folder")
    ours = {MANIFEST_NAME, GAZE_TRUTH_NAME, summary_path(root / MANIFEST_NAME).name, IMAGE_DIR}
    other = sorted(p.name for p in root.iterdir() if p.name not in ours)
    if other:
        raise DataError(
            f"{root}: folder is not empty and is not a synthetic benchmark (found {', '.join(other[:3])}); "
            "choose an empty or new folder"
        )


def write_synthetic_benchmark(
    out_dir: str | Path,
    config: SyntheticBenchmarkConfig = SyntheticBenchmarkConfig(),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticBenchmark:
    """Render the demo benchmark into ``out_dir``: images, manifest, summary and gaze truth.

    Layout: ``images/<generator>/<split>-<index>.png`` (RGB PNG, ``config.size`` square),
    ``manifest.csv`` (docs/ARCHITECTURE.md columns, paths relative to ``out_dir``),
    ``manifest.summary.json`` and ``manifest.gaze.csv`` (one row per image: ``path``,
    ``pitch``, ``yaw`` in radians, ``eyes_agree`` 0/1, ``landmarks`` as ten numbers
    ``x0 y0 ... x4 y4``). The same config gives byte-identical files. A previous synthetic benchmark in ``out_dir`` is replaced, stale images included.

    Args:
        out_dir: output folder; created if missing, must be empty or a previous benchmark.
        config: seed and sizes (:meth:`SyntheticBenchmarkConfig.quick` for CI).
        progress: called with (images done, images total) as rendering advances.

    Raises:
        DataError: ``out_dir`` holds other files, or a file cannot be written.
    """
    root = Path(out_dir).resolve()
    _check_output_folder(root)
    jobs = _plan(config)
    wanted = {_relative_image_path(g.name, s, i) for g, s, i in jobs}
    images = root / IMAGE_DIR
    if images.is_dir():
        for stale in sorted(images.glob("*/*.png")):
            if stale.relative_to(root).as_posix() not in wanted:
                stale.unlink()
    rows: list[ManifestRow] = []
    gaze_rows: list[list[str]] = []
    counts: dict[str, dict[str, int]] = {g.name: config.counts(g) for g in GENERATORS}

    # One image at a time, in plan order: each image is a pure function of its own seed, and
    # at ~25 ms of CPU per image threads gained nothing (the work is many small NumPy calls).
    for done, job in enumerate(jobs, start=1):
        gen, split, index = job
        png, r = _render_png(job, config)
        rel = _relative_image_path(gen.name, split, index)
        target = root / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)
        except OSError as exc:
            raise DataError(f"{target}: cannot write the synthetic image ({exc.strerror})") from None
        rows.append(
            ManifestRow(
                str(target), split, gen.dfd_label, gen.dfa_label, gen.name, gen.forgery_type,
                gen.architecture, SOURCE_NAME, "", None,
            )
        )  # fmt: skip
        marks = " ".join(f"{v:.2f}" for v in r.landmarks.reshape(-1))
        gaze_rows.append([rel, f"{r.gaze[0]:.6f}", f"{r.gaze[1]:.6f}", str(int(r.eyes_agree)), marks])
        if progress is not None:
            progress(done, len(jobs))

    manifest = root / MANIFEST_NAME
    write_manifest(manifest, rows)
    summary = summary_path(manifest)
    write_summary(
        summary,
        {
            "kind": "gazeclip synthetic demo benchmark",
            "note": "procedural faces rendered by gazeclip_cli.core.demo.synthetic; not real data",
            "seed": config.seed,
            "size": config.size,
            "images": len(rows),
            "generators": [
                {
                    "name": g.name,
                    "dfd_label": g.dfd_label,
                    "dfa_label": g.dfa_label,
                    "forgery_type": g.forgery_type,
                    "architecture": g.architecture,
                    "seen": g.seen,
                    "trace": g.trace,
                    "counts": counts[g.name],
                }
                for g in GENERATORS
            ],
            "gaze_truth": GAZE_TRUTH_NAME,
        },
    )
    gaze_path = root / GAZE_TRUTH_NAME
    _write_csv(gaze_path, GAZE_COLUMNS, gaze_rows)
    written = tuple(r._replace(path=Path(r.path).relative_to(root).as_posix()) for r in rows)
    return SyntheticBenchmark(
        root=root, manifest=manifest, summary=summary, gaze_truth=gaze_path, rows=written, counts=counts
    )


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({exc.strerror})") from None


def read_gaze_truth(path: str | Path) -> dict[str, GazeTruth]:
    """Read a gaze-truth CSV written by :func:`write_synthetic_benchmark`, keyed by manifest path.

    Raises:
        DataError: the file is missing or malformed; the message names the file and line.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != GAZE_COLUMNS:
                raise DataError(
                    f"{path}: gaze-truth header must be {','.join(GAZE_COLUMNS)}; regenerate the benchmark"
                )
            out: dict[str, GazeTruth] = {}
            for line, fields in enumerate(reader, start=2):
                try:
                    rel, pitch, yaw, agree, marks = fields
                    lm = np.array([float(v) for v in marks.split()], np.float32).reshape(5, 2)
                    out[rel] = GazeTruth(float(pitch), float(yaw), agree == "1", lm)
                except ValueError:
                    raise DataError(
                        f"{path} line {line}: malformed gaze-truth row; regenerate the benchmark"
                    ) from None
            return out
    except FileNotFoundError:
        raise DataError(f"{path}: gaze-truth file not found; regenerate the synthetic benchmark") from None
