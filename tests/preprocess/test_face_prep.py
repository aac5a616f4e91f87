"""One per-face preparation: preprocess, the predictor and the demo's gaze fit all call
FacePreparer.prepare, and give byte-identical crops and patches for the same image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gazeclip_cli.core.data.cache import PreprocessSettings, read_cached_rgb
from gazeclip_cli.core.data.face_prep import FacePreparer
from gazeclip_cli.core.data.faces import resize_crop
from gazeclip_cli.core.data.preprocess import preprocess
from gazeclip_cli.core.demo.gaze_fit import DEMO_PREPROCESSING, render_gaze_set
from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
from tests.inference.conftest import make_model_folder


@pytest.fixture
def prepared(monkeypatch):
    """Every call of FacePreparer.prepare, whoever makes it: (image, settings, FaceInputs)."""
    calls = []
    real = FacePreparer.prepare

    def spy(self, image, face, **kwargs):
        out = real(self, image, face, **kwargs)
        calls.append((image.copy(), self.settings, out))
        return out

    monkeypatch.setattr(FacePreparer, "prepare", spy)
    return calls


def _only_new(calls, before):
    assert len(calls) == before + 1, "the entry point did not prepare its face with FacePreparer.prepare"
    return calls[-1]


def test_preprocess_the_predictor_and_the_demo_fit_prepare_a_face_identically(prepared, tmp_path):
    # The demo's gaze fit renders a face and prepares it.
    patches, _ = render_gaze_set(1, seed=3)
    render, settings, fit_inputs = _only_new(prepared, 0)
    assert settings == DEMO_PREPROCESSING and np.array_equal(fit_inputs.patch, patches[0])
    # The template is frontal: the normalised camera barely turns (a few degrees of pitch).
    rotation = fit_inputs.rotation
    assert np.degrees(np.arccos((np.trace(rotation) - 1) / 2)) < 6.0

    # preprocess of the same render, as the demo runs it.
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(render).save(src / "render.png")
    out = tmp_path / "cache"
    preprocess(src, out, DEMO_PREPROCESSING, workers=1)
    image, settings, cache_inputs = _only_new(prepared, 1)
    assert np.array_equal(image, render) and settings == DEMO_PREPROCESSING
    crop_file = next((out / "crops").rglob("*.png"))
    patch_file = next((out / "patches").rglob("*.png"))
    assert np.array_equal(read_cached_rgb(patch_file), patches[0])
    assert np.array_equal(read_cached_rgb(crop_file), cache_inputs.crop)

    # attribute / scan's stage 1 on the same file.
    predictor = Predictor(
        make_model_folder(tmp_path / "model"), settings=PredictorSettings(face_mode="aligned")
    )
    face = predictor.prepare(src / "render.png").faces[0]
    image, settings, _ = _only_new(prepared, 2)
    assert np.array_equal(image, render) and settings.preparation() == DEMO_PREPROCESSING.preparation()
    assert np.array_equal(face.patch, patches[0]) and np.array_equal(face.rotation, rotation)
    # The network's crop is the cached crop resized as training reads it (the tiny model: 64).
    assert np.array_equal(face.crop, read_cached_rgb(crop_file, 64))
    assert np.array_equal(face.crop, resize_crop(cache_inputs.crop, 64))


def test_aligned_geometry_is_computed_once_per_size_and_changes_nothing(astronaut):
    from gazeclip_cli.core.data.gaze_normalization import normalise_face

    preparer = FacePreparer(PreprocessSettings(aligned=True))
    for side in (96, 80, 96):  # the second 96 comes from the per-size geometry
        image = np.ascontiguousarray(np.asarray(Image.fromarray(astronaut).resize((side, side))))
        face = preparer.aligned_face(image)
        inputs = preparer.prepare(image, face)
        expected = normalise_face(image, face.landmarks)
        assert np.array_equal(inputs.patch, expected.patch) and np.array_equal(
            inputs.rotation, expected.rotation
        )
        assert inputs.crop.shape == (256, 256, 3) and inputs.score is None
    assert sorted(preparer._geometry) == [(80, 80), (96, 96)]
    assert preparer.prepare(image, face, patch=False).patch is None
