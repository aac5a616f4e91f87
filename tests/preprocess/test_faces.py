"""MTCNN face detection on real photos, the face choice policy, crops and aligned mode."""

from __future__ import annotations

import numpy as np
import pytest

from gazeclip_cli.core.data.faces import (
    Face,
    aligned_face,
    aligned_template,
    crop_box,
    crop_face,
    crop_square,
    resize_crop,
    select_faces,
)


def _inside(points: np.ndarray, box) -> bool:
    x0, y0, x1, y1 = box
    return bool(((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).all())


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_one_face_with_plausible_landmarks(request, detector, photo):
    faces = detector.detect_one(request.getfixturevalue(photo))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    assert _inside(face.landmarks, face.box)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]  # MTCNN order: image-left eye first
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_same_result_as_facenet_pytorch(detector, astronaut, grace_hopper):
    from facenet_pytorch import MTCNN

    reference = MTCNN(keep_all=True, device="cpu")
    for image in (astronaut, grace_hopper):
        boxes, probs, points = reference.detect(image, landmarks=True)
        ours = detector.detect_one(image)
        # facenet-pytorch returns numpy object arrays; make them float arrays to compare.
        boxes = np.asarray(np.stack(list(boxes)), dtype=np.float64).reshape(-1, 4)
        points = np.asarray(np.stack(list(points)), dtype=np.float64).reshape(-1, 5, 2)
        assert len(ours) == len(boxes) == 1
        np.testing.assert_allclose(ours[0].box, boxes[0], atol=0.01)
        np.testing.assert_allclose(ours[0].landmarks, points[0], atol=0.01)
        assert ours[0].score == pytest.approx(float(probs[0]), abs=1e-4)


def test_batch_equals_one_at_a_time_and_keeps_order(detector, astronaut):
    import cv2

    photo = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    blank = np.full_like(photo, 127)
    flipped = np.ascontiguousarray(photo[:, ::-1])
    small = cv2.resize(photo, (160, 160), interpolation=cv2.INTER_AREA)  # another size: its own batch
    batch = detector.detect([photo, blank, flipped, small], batch_size=8)
    assert [len(faces) for faces in batch] == [1, 0, 1, 1]
    for image, faces in zip([photo, flipped, small], [batch[0], batch[2], batch[3]], strict=True):
        alone = detector.detect_one(image)[0]
        np.testing.assert_allclose(faces[0].box, alone.box, atol=1e-3)
        np.testing.assert_allclose(faces[0].landmarks, alone.landmarks, atol=1e-3)
    # The mirrored photo's face is mirrored.
    assert batch[2][0].box[0] == pytest.approx(256 - batch[0][0].box[2], abs=3)


def test_rejects_non_rgb_input(detector):
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect([np.zeros((32, 32), np.uint8)])


def _face(box, score):
    x0, y0, x1, y1 = box
    marks = np.array([[x0 + 1, y0 + 1]] * 5, dtype=float)
    return Face(box=box, score=score, landmarks=marks)


def test_face_policies():
    big_unsure = _face((0, 0, 100, 100), 0.91)
    small_sure = _face((200, 0, 240, 40), 0.999)
    middle = _face((300, 0, 360, 60), 0.95)
    faces = [small_sure, big_unsure, middle]
    assert select_faces(faces, "largest") == [big_unsure]
    assert select_faces(faces, "score") == [small_sure]
    assert select_faces(faces, "all") == [big_unsure, middle, small_sure]
    assert select_faces([], "largest") == []
    with pytest.raises(ValueError, match="unknown face policy"):
        select_faces(faces, "biggest")  # type: ignore[arg-type]


def test_crop_box_and_padding():
    assert crop_box((10, 20, 30, 60), margin=0.25) == (-10.0, 10.0, 50.0, 70.0)  # side 1.5 x 40
    image = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    inside = crop_square(image, (10, 20, 42, 52), size=32)
    assert np.array_equal(inside, image[20:52, 10:42])  # same size: an exact cut
    padded = crop_square(np.full((10, 10, 3), 200, np.uint8), (-10, -10, 20, 20), size=30)
    assert (padded[:10, :10] == 0).all() and (padded[10:20, 10:20] == 200).all()


def test_crop_face_frames_the_face(detector, astronaut, astronaut_face):
    crop = crop_face(astronaut, astronaut_face)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    # The face box's longer side covers 1 / (1 + 2 * 0.25) = 2/3 of the crop, centred.
    again = detector.detect_one(crop)
    assert len(again) == 1
    x0, y0, x1, y1 = again[0].box
    assert abs((x0 + x1) / 2 - 128) < 12 and abs((y0 + y1) / 2 - 128) < 12
    assert 0.6 < max(x1 - x0, y1 - y0) / 256 < 0.75


def test_aligned_template_is_the_documented_one():
    expected = [[96.5, 120.9], [159.5, 120.9], [128.0, 160.6], [107.2, 192.0], [148.8, 192.0]]
    np.testing.assert_allclose(aligned_template(256), expected, atol=0.06)
    np.testing.assert_allclose(aligned_template(128), np.array(expected) / 2, atol=0.06)


def test_aligned_template_is_a_fresh_array_each_time():
    template = aligned_template(256)
    template[0] = -1.0  # a caller's edit must not reach the next caller
    assert aligned_template(256)[0, 0] == pytest.approx(96.5, abs=0.06)


def test_resize_crop_is_pillows_bicubic_to_rounding(astronaut):
    from PIL import Image

    crop = crop_square(astronaut, (100, 20, 356, 276))  # a textured 256 crop of a real photo
    for size in (64, 100, 224):
        ours = resize_crop(crop, size)
        pillow = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
        assert ours.shape == (size, size, 3) and ours.dtype == np.uint8
        assert np.abs(ours.astype(int) - pillow).max() <= 1  # torch rounds a few pixels the other way
        assert (ours != pillow).mean() < 0.05
    assert resize_crop(crop, 256) is crop
    read_only = crop.copy()
    read_only.setflags(write=False)  # as Pillow's arrays are
    assert np.array_equal(resize_crop(read_only, 64), resize_crop(crop, 64))


def test_aligned_face_uses_the_centred_square():
    face = aligned_face(np.zeros((300, 200, 3), np.uint8))
    assert face.box == (0.0, 50.0, 200.0, 250.0)
    assert face.score is None
    np.testing.assert_allclose(face.landmarks, aligned_template(256) * 200 / 256 + [0, 50])
    own = np.array([[80, 100], [176, 100], [128, 150], [90, 190], [166, 190]], float)
    np.testing.assert_allclose(aligned_face(np.zeros((512, 512, 3), np.uint8), own).landmarks, own * 2)


def test_aligned_template_matches_mtcnn_on_an_aligned_photo(detector, astronaut, astronaut_face):
    """Align the photo to the template by its own landmarks: MTCNN finds them there again."""
    import cv2

    face = astronaut_face
    template = aligned_template(256)
    warp, _ = cv2.estimateAffinePartial2D(face.landmarks.astype(np.float32), template.astype(np.float32))
    aligned = cv2.warpAffine(astronaut, warp, (256, 256), flags=cv2.INTER_AREA)
    found = detector.detect_one(aligned)[0].landmarks
    eyes_nose = slice(0, 3)  # the rigid points; a smile moves the mouth corners
    assert np.abs(found[eyes_nose] - template[eyes_nose]).max() < 4
    assert np.abs(found - template).max() < 16
