"""ETH-XGaze data normalisation of a face: head pose by PnP, then the normalising warp.

The frozen gaze estimator reads a 224 x 224 *normalised* face patch: the image the face
would give in a virtual camera (focal length 960 px) placed 600 mm in front of the face
centre, looking straight at it, with the head's x axis horizontal. This removes the
camera's distance and the head's in-plane roll, the way ETH-XGaze (Zhang et al., ECCV
2020) prepared its training data, so the estimator sees faces as it was trained on them.

Steps (:func:`normalise_face`):

1. Head pose: ``cv2.solvePnP`` fits :data:`FACE_MODEL_MM`, a generic 3D face, to the 5
   detected landmarks, with the camera matrix the user gives or, by default, focal length
   = image width and principal point = image centre (:func:`default_camera_matrix`).
2. The face centre (:data:`FACE_CENTRE_MM`, moved by the head pose) fixes the virtual
   camera's forward axis; its "down" axis is perpendicular to forward and to the head's
   x axis, so head roll is undone.
3. The warp ``W = K_norm @ S @ R @ inv(K)`` maps the image to the patch: ``R`` rotates
   the camera onto the new axes, ``S`` scales depth so the face centre sits at 600 mm,
   ``K_norm`` is the virtual camera (focal 960, centre at the patch centre).

The generic 5-point face model. ETH-XGaze's ``face_model.txt`` is a 50-landmark face
(dlib's 68-point scheme without the jaw line) in millimetres, in camera-like axes: x to
the image's right, y down, z away from the camera. MTCNN gives 5 points instead (eye
centres, nose tip, mouth corners), so :data:`FACE_MODEL_MM` is derived from that model:

* eye centre = mean of the 6 eye-contour points of each eye (dlib 36-41, 42-47);
* nose tip = dlib point 30;
* mouth corners = dlib points 48 and 54;
* then made left-right symmetric (mean of |x|, y and z of each pair; nose on x = 0) and
  rounded to 0.1 mm. The result has an interocular distance of 62.8 mm, the adult mean.

:data:`FACE_CENTRE_MM` is ETH-XGaze's face centre: the midpoint between the centre of the
four eye corners (dlib 36, 39, 42, 45) and the centre of the two nose-base points (dlib
31, 35), computed from the same 50-landmark model. It is a fixed point of the rigid model,
so it follows the head pose exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gazeclip_cli.core.config_io import from_dict, read_toml
from gazeclip_cli.core.errors import ConfigError, InputError, unknown_key_message

# (5, 3) millimetres, MTCNN's landmark order: image-left eye centre (the subject's right
# eye), image-right eye centre, nose tip, image-left mouth corner, image-right mouth corner.
# Axes: x to the image's right, y down, z away from the camera (see the module docstring).
FACE_MODEL_MM = np.array(
    [
        [-31.4, -34.4, 29.6],
        [31.4, -34.4, 29.6],
        [0.0, 5.2, 3.3],
        [-20.7, 36.5, 24.5],
        [20.7, 36.5, 24.5],
    ],
    dtype=np.float64,
)
# ETH-XGaze's face centre in the same axes: midway between the eye-corner centre and the nose base.
FACE_CENTRE_MM = np.array([0.0, -10.3, 27.3], dtype=np.float64)
# Largest landmark reprojection error after PnP, as a fraction of the eye distance, accepted
# as a face (the test photos, one smiling broadly, reach 0.2).
MAX_LANDMARK_MISFIT = 0.5


@dataclass(frozen=True)
class NormalisationSettings:
    """The virtual camera of the normalised patch (ETH-XGaze's face-patch values)."""

    focal: float = 960.0  # focal length of the virtual camera, pixels
    distance: float = 600.0  # distance from the virtual camera to the face centre, mm
    size: int = 224  # side of the square output patch, pixels


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of the camera that took the images, in pixels (a ``--camera`` TOML file)."""

    fx: float  # focal length along x
    fy: float  # focal length along y
    cx: float  # principal point x
    cy: float  # principal point y

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64)


@dataclass(frozen=True)
class HeadPose:
    """Rigid pose of :data:`FACE_MODEL_MM` in the camera: ``X_cam = rotation @ X_model + translation``."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,) millimetres


@dataclass(frozen=True)
class NormalisedFace:
    """A normalised face patch and the geometry that produced it."""

    patch: np.ndarray  # (size, size, 3) uint8, same channel order as the input image
    warp: np.ndarray  # (3, 3) homography, input-image pixels -> patch pixels
    rotation: np.ndarray  # (3, 3) R, camera axes -> normalised-camera axes
    head_pose: HeadPose  # head pose in the original camera
    landmarks: np.ndarray  # (5, 2) the input landmarks mapped into the patch


def default_camera_matrix(width: int, height: int) -> np.ndarray:
    """Camera matrix when none is given: focal length = image width, principal point = image centre."""
    return np.array(
        [[width, 0.0, width / 2.0], [0.0, width, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def load_camera(path: str | os.PathLike[str]) -> CameraIntrinsics:
    """Read camera intrinsics from a TOML file with keys ``fx``, ``fy``, ``cx``, ``cy`` (pixels).

    Raises:
        ConfigError: the file is missing, not TOML, has unknown or missing keys, or bad values.
    """
    where = str(path)
    data = read_toml(Path(path))
    required = ("fx", "fy", "cx", "cy")
    for key in data:
        if key not in required:
            raise ConfigError(unknown_key_message(key, required, where))
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(
            f"{where}: missing key(s) {', '.join(missing)} (a camera file needs fx, fy, cx, cy in pixels)"
        )
    cam = from_dict(CameraIntrinsics, data, where)
    if not (cam.fx > 0 and cam.fy > 0):
        raise ConfigError(
            f"{where}: fx and fy must be positive focal lengths in pixels, got {cam.fx}, {cam.fy}"
        )
    return cam


def estimate_head_pose(landmarks: np.ndarray, camera_matrix: np.ndarray) -> HeadPose:
    """Fit :data:`FACE_MODEL_MM` to 5 image landmarks (MTCNN order) by PnP.

    EPnP gives a closed-form start, Levenberg-Marquardt refines it (as ETH-XGaze does).

    Args:
        landmarks: (5, 2) pixel coordinates.
        camera_matrix: (3, 3) intrinsics.

    Raises:
        InputError: no valid pose: degenerate landmarks, a solution behind the camera, or
            landmarks the face model cannot fit (:data:`MAX_LANDMARK_MISFIT`).
    """
    pts = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float64).reshape(5, 1, 2))
    obj = np.ascontiguousarray(FACE_MODEL_MM.reshape(5, 1, 3))
    cam = np.asarray(camera_matrix, dtype=np.float64)
    if not np.all(np.isfinite(pts)):
        raise InputError("head pose: face landmarks are not finite numbers")
    eye_distance = float(np.linalg.norm(pts[1, 0] - pts[0, 0]))
    if eye_distance < 2.0:
        raise InputError(f"head pose: degenerate face landmarks (eyes {eye_distance:.1f} px apart)")
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, pts, cam, None, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            ok, rvec, tvec = cv2.solvePnP(obj, pts, cam, None, rvec, tvec, True, flags=cv2.SOLVEPNP_ITERATIVE)
    except cv2.error as exc:
        raise InputError(f"head pose: PnP failed on the face landmarks ({exc.err})") from None
    if not ok or not np.all(np.isfinite(tvec)) or float(tvec[2, 0]) <= 0:
        raise InputError(
            "head pose: no pose puts the face model in front of the camera (degenerate landmarks)"
        )
    projected, _ = cv2.projectPoints(obj, rvec, tvec, cam, None)
    misfit = float(np.linalg.norm(projected.reshape(5, 2) - pts.reshape(5, 2), axis=1).max()) / eye_distance
    if misfit > MAX_LANDMARK_MISFIT:
        # Real faces, even smiling or half-turned, stay well below this; random points do not.
        raise InputError(
            f"head pose: the landmarks do not fit a face (off by {misfit:.2f} x the eye distance after PnP)"
        )
    rotation, _ = cv2.Rodrigues(rvec)
    return HeadPose(rotation=rotation, translation=tvec.reshape(3))


def normalising_rotation(pose: HeadPose) -> tuple[np.ndarray, np.ndarray]:
    """The rotation onto the virtual camera's axes, and the face centre in camera coordinates.

    Returns:
        ``(R, centre)``: R (3, 3) whose rows are the virtual camera's right, down and forward
        axes in camera coordinates; centre (3,) in mm.
    """
    centre = pose.rotation @ FACE_CENTRE_MM + pose.translation
    forward = centre / np.linalg.norm(centre)
    head_x = pose.rotation[:, 0]
    down = np.cross(forward, head_x)
    down /= np.linalg.norm(down)
    right = np.cross(down, forward)
    right /= np.linalg.norm(right)
    return np.stack([right, down, forward]), centre


def normalisation_warp(
    pose: HeadPose, camera_matrix: np.ndarray, settings: NormalisationSettings = NormalisationSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """The image -> patch homography ``K_norm @ S @ R @ inv(K)`` and the rotation ``R``."""
    rot, centre = normalising_rotation(pose)
    k_norm = np.array(
        [
            [settings.focal, 0.0, settings.size / 2.0],
            [0.0, settings.focal, settings.size / 2.0],
            [0.0, 0.0, 1.0],
        ]
    )
    # Scale depth so the face centre sits at the normalised distance.
    scale = np.diag([1.0, 1.0, settings.distance / np.linalg.norm(centre)])
    warp = k_norm @ scale @ rot @ np.linalg.inv(np.asarray(camera_matrix, dtype=np.float64))
    return warp, rot


def normalise_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    camera_matrix: np.ndarray | None = None,
    settings: NormalisationSettings = NormalisationSettings(),
) -> NormalisedFace:
    """ETH-XGaze-normalised face patch from an image and its 5 face landmarks.

    Args:
        image: (H, W, 3) uint8 image.
        landmarks: (5, 2) landmarks in MTCNN order, image pixels.
        camera_matrix: (3, 3) intrinsics; default focal = width, centre = image centre.
        settings: the virtual camera.

    Raises:
        InputError: the head pose cannot be estimated from the landmarks.
    """
    h, w = image.shape[:2]
    cam = (
        default_camera_matrix(w, h) if camera_matrix is None else np.asarray(camera_matrix, dtype=np.float64)
    )
    pose = estimate_head_pose(landmarks, cam)
    warp, rot = normalisation_warp(pose, cam, settings)
    patch = cv2.warpPerspective(image, warp, (settings.size, settings.size), flags=cv2.INTER_LINEAR)
    warped = cv2.perspectiveTransform(
        np.asarray(landmarks, dtype=np.float64).reshape(-1, 1, 2), warp
    ).reshape(-1, 2)
    return NormalisedFace(patch=patch, warp=warp, rotation=rot, head_pose=pose, landmarks=warped)


def canonical_patch_landmarks(settings: NormalisationSettings = NormalisationSettings()) -> np.ndarray:
    """Where the model's 5 landmarks fall in the patch for a head facing the virtual camera.

    The head's rotation in the normalised camera is then the identity and the face centre is
    at (0, 0, distance); a real face deviates from this by its head pose and its shape.
    Returns (5, 2) pixel coordinates.
    """
    pts = FACE_MODEL_MM - FACE_CENTRE_MM + np.array([0.0, 0.0, settings.distance])
    return settings.focal * pts[:, :2] / pts[:, 2:3] + settings.size / 2.0


# --- gaze vectors -------------------------------------------------------------------------------


def pitchyaw_to_vector(pitchyaw: np.ndarray) -> np.ndarray:
    """(N, 2) pitch, yaw (radians) -> (N, 3) unit gaze vectors, ETH-XGaze's convention.

    ``(-cos p sin y, -sin p, -cos p cos y)`` in camera axes (x right, y down, z away from the
    camera): (0, 0) looks straight into the camera, positive yaw towards the image's left,
    positive pitch up.
    """
    pitchyaw = np.asarray(pitchyaw, dtype=np.float64)
    p, y = pitchyaw[:, 0], pitchyaw[:, 1]
    return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], axis=1)


def vector_to_pitchyaw(vectors: np.ndarray) -> np.ndarray:
    """(N, 3) gaze vectors -> (N, 2) pitch, yaw in radians (inverse of :func:`pitchyaw_to_vector`)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return np.stack([np.arcsin(-v[:, 1]), np.arctan2(-v[:, 0], -v[:, 2])], axis=1)


def gaze_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the gaze vectors of two (N, 2) pitch, yaw arrays, row by row: (N,)."""
    return np.clip(np.sum(pitchyaw_to_vector(a) * pitchyaw_to_vector(b), axis=1), -1.0, 1.0)
