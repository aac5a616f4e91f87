"""The one per-face preparation: a decoded image and its face -> the network's crop, the gaze patch, metadata.

``preprocess``, the predictor (``attribute``, ``scan``) and the demo's gaze fit all prepare
faces with :class:`FacePreparer`, so a face is cut and normalised by one piece of code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gazeclip_cli.core.data.cache import PreprocessSettings
from gazeclip_cli.core.data.faces import Face, FaceDetector, aligned_face, crop_box, crop_square, select_faces
from gazeclip_cli.core.data.gaze_normalization import normalise_face

_MAX_SIZES = 256  # aligned geometries kept (one per image size)


@dataclass(frozen=True)
class FaceInputs:
    """One face, ready for the cache or the network."""

    crop: np.ndarray  # (crop_size, crop_size, 3) uint8, the network's image input before resizing
    patch: np.ndarray | None  # (P, P, 3) uint8 ETH-XGaze-normalised gaze patch; None when not asked for
    rotation: np.ndarray | None  # (3, 3) camera -> normalised-camera rotation of the patch
    box: tuple[float, float, float, float]  # x0 y0 x1 y1 of the face in source pixels
    score: float | None  # the detector's probability; None in aligned mode


class FacePreparer:
    """Faces of decoded images and their network inputs, under one set of preprocessing settings.

    Detected faces: the square crop around the box (``crop_margin``) and
    :func:`~gazeclip_cli.core.data.gaze_normalization.normalise_face` on the landmarks with
    the given camera (or focal = image width) and virtual camera. Aligned faces: the centred
    square and the template landmarks; their landmarks depend only on the image size, so the
    head pose and warp are computed once per size and the patch is the same
    ``warpPerspective`` ``normalise_face`` makes. Safe to use from several threads.

    Args:
        settings: face mode, policy, crop, normalisation, camera and template.
    """

    def __init__(self, settings: PreprocessSettings) -> None:
        self.settings = settings
        self._camera = None if settings.camera is None else settings.camera.matrix()
        self._template = (
            None if settings.aligned_template is None else np.asarray(settings.aligned_template, np.float64)
        )
        self._geometry: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def aligned_face(self, image: np.ndarray) -> Face:
        """The face of an aligned face image (the centred square, template landmarks)."""
        return aligned_face(image, self._template, self.settings.template_size)

    def find_faces(
        self, images: Sequence[np.ndarray], detector: FaceDetector | None, batch_size: int
    ) -> list[list[Face]]:
        """Each image's faces under the face policy: detected (``batch_size`` per pass), or its aligned face."""
        if self.settings.aligned:
            return [[self.aligned_face(img)] for img in images]
        if detector is None:
            raise ValueError("detected faces need a FaceDetector")
        # Pillow's arrays are read-only and torch warns on them; a copy costs little beside MTCNN.
        images = [img if img.flags.writeable else img.copy() for img in images]
        found = detector.detect(images, batch_size=batch_size)
        return [select_faces(faces, self.settings.face_policy) for faces in found]  # type: ignore[arg-type]

    def prepare(self, image: np.ndarray, face: Face, *, patch: bool = True) -> FaceInputs:
        """The crop and (when ``patch``) the normalised gaze patch of one face of ``image``.

        Args:
            image: (H, W, 3) uint8 RGB.
            face: one of :meth:`find_faces`'s faces of this image.
            patch: also normalise the gaze patch (a model without a gaze encoder needs none).

        Raises:
            InputError: the head pose cannot be estimated from the face's landmarks.
        """
        s = self.settings
        gaze_patch = rotation = None
        if patch and s.aligned:
            gaze_patch, rotation = self._aligned_patch(image, face)
        elif patch:
            normalised = normalise_face(image, face.landmarks, self._camera, s.patch)
            gaze_patch, rotation = normalised.patch, normalised.rotation
        box = face.box if s.aligned else crop_box(face.box, s.crop_margin)  # aligned: the square is the face
        return FaceInputs(
            crop=crop_square(image, box, s.crop_size),
            patch=gaze_patch,
            rotation=rotation,
            box=tuple(float(v) for v in face.box),  # type: ignore[arg-type]
            score=face.score,
        )

    def _aligned_patch(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
        size = (image.shape[0], image.shape[1])
        geometry = self._geometry.get(size)
        if geometry is None:
            normalised = normalise_face(image, face.landmarks, self._camera, self.settings.patch)
            if len(self._geometry) >= _MAX_SIZES:  # many sizes: keep the cache bounded
                self._geometry.clear()
            self._geometry[size] = (normalised.warp, normalised.rotation)
            return normalised.patch, normalised.rotation
        warp, rotation = geometry
        side = self.settings.patch.size
        return cv2.warpPerspective(image, warp, (side, side), flags=cv2.INTER_LINEAR), rotation
