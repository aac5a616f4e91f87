"""ETH-XGaze normalisation: exact geometry on a synthetic head, then the real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gazeclip_cli.core.data.gaze_normalization import (
    FACE_CENTRE_MM,
    FACE_MODEL_MM,
    NormalisationSettings,
    canonical_patch_landmarks,
    default_camera_matrix,
    estimate_head_pose,
    load_camera,
    normalise_face,
)
from gazeclip_cli.core.errors import ConfigError, InputError


def _project(
    points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: np.ndarray
) -> np.ndarray:
    cam = points @ rotation.T + translation
    uvw = cam @ camera.T
    return uvw[:, :2] / uvw[:, 2:3]


def _rotation(pitch_deg: float, yaw_deg: float, roll_deg: float) -> np.ndarray:
    rvec = np.radians([pitch_deg, yaw_deg, 0.0])
    r, _ = cv2.Rodrigues(rvec)
    roll, _ = cv2.Rodrigues(np.array([0.0, 0.0, np.radians(roll_deg)]))
    return roll @ r


def test_face_model_is_symmetric_and_adult_sized():
    assert np.linalg.norm(FACE_MODEL_MM[1] - FACE_MODEL_MM[0]) == pytest.approx(62.8, abs=0.1)
    mirrored = FACE_MODEL_MM * [-1, 1, 1]
    np.testing.assert_allclose(mirrored[[1, 0, 2, 4, 3]], FACE_MODEL_MM)
    assert FACE_CENTRE_MM[0] == 0
    # The face centre lies between the eyes and the mouth, behind the nose tip.
    assert FACE_MODEL_MM[0, 1] < FACE_CENTRE_MM[1] < FACE_MODEL_MM[3, 1]
    assert FACE_CENTRE_MM[2] > FACE_MODEL_MM[2, 2]


def test_canonical_landmarks_in_the_patch():
    marks = canonical_patch_landmarks()
    # Eyes (2.3 mm behind the centre) 960 * 31.4 / 602.3 px either side of the centre, level, above it; mouth below.
    np.testing.assert_allclose(marks[0], [112 - 960 * 31.4 / 602.3, 112 + 960 * (-24.1) / 602.3], atol=0.05)
    assert marks[0, 1] == marks[1, 1] and marks[0, 0] + marks[1, 0] == pytest.approx(224)
    assert marks[3, 1] > 112 > marks[0, 1]


@pytest.mark.parametrize(("pitch", "yaw", "roll"), [(0, 0, 0), (10, -20, 0), (-15, 25, 30), (5, 5, -40)])
def test_pose_recovered_and_patch_is_canonical_on_a_synthetic_head(pitch, yaw, roll):
    camera = default_camera_matrix(640, 480)
    rotation = _rotation(pitch, yaw, roll)
    translation = np.array([40.0, -30.0, 700.0])
    landmarks = _project(FACE_MODEL_MM, rotation, translation, camera)

    pose = estimate_head_pose(landmarks, camera)
    angle = np.degrees(np.linalg.norm(cv2.Rodrigues(pose.rotation @ rotation.T)[0]))
    assert angle < 0.1
    np.testing.assert_allclose(pose.translation, translation, atol=0.1)

    image = np.zeros((480, 640, 3), np.uint8)
    result = normalise_face(image, landmarks)
    assert result.patch.shape == (224, 224, 3)
    # In the rotated camera the face centre is on the optical axis at its true distance D; the
    # warp then scales every depth by 600 / D (ETH-XGaze's S matrix) and projects with focal 960
    # around the patch centre.
    head = result.rotation @ pose.rotation
    distance = np.linalg.norm(rotation @ FACE_CENTRE_MM + translation)
    model = (FACE_MODEL_MM - FACE_CENTRE_MM) @ head.T + [0, 0, distance]
    expected = 960 * model[:, :2] / (model[:, 2:3] * 600 / distance) + 112
    np.testing.assert_allclose(result.landmarks, expected, atol=0.05)
    # The head's x axis is horizontal in the patch: roll is undone.
    assert abs(head[1, 0]) < 1e-9


def test_frontal_head_lands_on_the_canonical_landmarks():
    camera = default_camera_matrix(640, 480)
    # A head facing the camera on its axis at 600 mm: the normalisation only changes the focal length.
    translation = np.array([0.0, 0.0, 600.0]) - FACE_CENTRE_MM
    landmarks = _project(FACE_MODEL_MM, np.eye(3), translation, camera)
    result = normalise_face(np.zeros((480, 640, 3), np.uint8), landmarks)
    np.testing.assert_allclose(result.landmarks, canonical_patch_landmarks(), atol=0.05)


def test_camera_matrix_is_used():
    camera = default_camera_matrix(640, 480)
    landmarks = _project(FACE_MODEL_MM, np.eye(3), np.array([0.0, 0.0, 500.0]), camera)
    near = estimate_head_pose(landmarks, camera)
    long_lens = camera.copy()
    long_lens[0, 0] = long_lens[1, 1] = 2 * 640
    far = estimate_head_pose(landmarks, long_lens)
    assert near.translation[2] == pytest.approx(500.0, abs=0.01)
    # Twice the focal length: the same face must be about twice as far (perspective differs slightly).
    assert far.translation[2] == pytest.approx(2 * near.translation[2], rel=0.05)


def test_degenerate_landmarks_are_an_input_error():
    with pytest.raises(InputError, match="head pose"):
        normalise_face(np.zeros((100, 100, 3), np.uint8), np.full((5, 2), 50.0))
    scattered = np.array([[10.0, 80.0], [30.0, 20.0], [90.0, 85.0], [5.0, 5.0], [60.0, 50.0]])
    with pytest.raises(InputError, match="do not fit a face"):
        estimate_head_pose(scattered, default_camera_matrix(100, 100))
    with pytest.raises(InputError, match="not finite"):
        estimate_head_pose(np.full((5, 2), np.nan), default_camera_matrix(100, 100))


def test_camera_file(tmp_path):
    good = tmp_path / "cam.toml"
    good.write_text("fx = 1200.0\nfy = 1190\ncx = 640\ncy = 360.5\n")
    cam = load_camera(good)
    np.testing.assert_allclose(cam.matrix(), [[1200, 0, 640], [0, 1190, 360.5], [0, 0, 1]])
    typo = tmp_path / "typo.toml"
    typo.write_text("fx = 1.0\nfy = 1.0\ncx = 1.0\ncyy = 1.0\n")
    with pytest.raises(ConfigError, match="unknown key 'cyy' \\(did you mean 'cy'\\?\\)"):
        load_camera(typo)
    missing = tmp_path / "missing.toml"
    missing.write_text("fx = 1.0\nfy = 1.0\n")
    with pytest.raises(ConfigError, match="missing key\\(s\\) cx, cy"):
        load_camera(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("fx = -5\nfy = 1.0\ncx = 1.0\ncy = 1.0\n")
    with pytest.raises(ConfigError, match="positive"):
        load_camera(bad)


# --- real photos ------------------------------------------------------------------------------


def _redetect(detector, patch: np.ndarray) -> np.ndarray:
    """Landmarks MTCNN finds on a patch; padded first, since the face fills the patch to its edges."""
    pad = 112
    framed = cv2.copyMakeBorder(patch, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    faces = detector.detect_one(framed)
    assert len(faces) == 1
    return faces[0].landmarks - pad


def _blurred_correlation(a: np.ndarray, b: np.ndarray) -> float:
    x, y = (cv2.GaussianBlur(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY).astype(float), (0, 0), 2) for p in (a, b))
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def _rotate(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR), m


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_patch_puts_the_eyes_where_the_geometry_says(request, detector, photo):
    image = request.getfixturevalue(photo)
    face = request.getfixturevalue(f"{photo}_face")
    result = normalise_face(image, face.landmarks)
    assert result.patch.shape == (224, 224, 3) and result.patch.dtype == np.uint8
    found = _redetect(detector, result.patch)
    # MTCNN on the patch agrees with the warped landmarks ...
    assert np.abs(found[:2] - result.landmarks[:2]).max() < 6
    # ... the eyes are level (roll undone) and where the canonical geometry puts them.
    eyes = found[:2]
    roll = np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    assert abs(roll) < 3
    np.testing.assert_allclose(eyes, canonical_patch_landmarks()[:2], atol=14)
    settings = NormalisationSettings(size=112, focal=480)
    assert normalise_face(image, face.landmarks, settings=settings).patch.shape == (112, 112, 3)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_rotated_photo_normalises_to_nearly_the_same_patch(request, detector, photo):
    image = request.getfixturevalue(photo)
    face = request.getfixturevalue(f"{photo}_face")
    reference = normalise_face(image, face.landmarks)
    rotated, m = _rotate(image, 15)
    # With the same landmarks carried along, the normalisation is exactly rotation-invariant ...
    carried = (m @ np.c_[face.landmarks, np.ones(5)].T).T
    exact = normalise_face(rotated, carried)
    assert np.abs(exact.patch.astype(float) - reference.patch).mean() < 3
    np.testing.assert_allclose(exact.landmarks, reference.landmarks, atol=0.01)
    # ... and with landmarks detected afresh on the rotated photo it stays close.
    found = detector.detect_one(rotated)
    assert len(found) == 1
    again = normalise_face(rotated, found[0].landmarks)
    assert np.abs(again.landmarks - reference.landmarks).max() < 10
    assert _blurred_correlation(again.patch, reference.patch) > 0.85
