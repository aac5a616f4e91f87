"""The predictor, Grad-CAM, provenance and the scan's walk, through the core API."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from gazeclip_cli.core.errors import ConfigError, ModelFolderError
from gazeclip_cli.core.inference.gradcam import grad_cam
from gazeclip_cli.core.inference.predictor import (
    UNKNOWN_GENERATOR,
    Predictor,
    PredictorSettings,
    camera_gaze,
)
from gazeclip_cli.core.inference.report_html import gaze_arrow
from gazeclip_cli.core.inference.scan import iter_inputs, printable_path
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.folder import WEIGHTS_FILE

from .conftest import aligned_images


@pytest.fixture(scope="module")
def aligned_predictor(model_dir):
    return Predictor(model_dir, settings=PredictorSettings(face_mode="aligned", batch_size=3))


def test_batched_predictions_equal_one_at_a_time(aligned_predictor, tmp_path):
    paths = aligned_images(tmp_path, 5)
    prepared = [aligned_predictor.prepare(p) for p in paths]
    faces = [f for p in prepared for f in p.faces]
    batched = aligned_predictor.predict_faces(faces)
    single = [aligned_predictor.predict_faces([f])[0] for f in faces]
    for b, s in zip(batched, single, strict=True):
        assert b.generator == s.generator and b.verdict == s.verdict
        assert b.p_fake == pytest.approx(s.p_fake, abs=1e-5)
        assert np.allclose(b.probabilities, s.probabilities, atol=1e-5)
    # The same crops through the model directly give the same probabilities.
    images, patches = aligned_predictor.input_tensors(faces)
    with torch.no_grad():
        out = aligned_predictor.model(images, patches)
    probs = torch.softmax(out.attribution_logits, -1).numpy()
    assert np.allclose(probs, np.array([b.probabilities for b in batched]), atol=1e-5)
    p_fake = torch.softmax(out.detection_logits, -1)[:, 1].numpy()
    assert [b.verdict for b in batched] == ["fake" if p >= 0.5 else "real" for p in p_fake]


def test_threshold_decides_unknown_generator(model_dir, tmp_path):
    path = aligned_images(tmp_path, 1)[0]
    low = Predictor(model_dir, settings=PredictorSettings(face_mode="aligned", threshold=0.01)).predict_file(
        path
    )
    high = Predictor(model_dir, settings=PredictorSettings(face_mode="aligned", threshold=1.0)).predict_file(
        path
    )
    a, b = low.faces[0], high.faces[0]
    assert a.generator == b.generator and a.generator_probability == pytest.approx(b.generator_probability)
    assert not a.unknown and a.attribution == a.generator
    assert b.unknown and b.attribution == UNKNOWN_GENERATOR
    assert [c.probability for c in a.top] == sorted((c.probability for c in a.top), reverse=True)
    assert len(a.top) == 3 and a.top[0].name == a.generator
    assert sum(a.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert low.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="threshold"):
        PredictorSettings(threshold=1.5)
    with pytest.raises(ConfigError, match="face policy"):
        PredictorSettings(faces="biggest")


def test_edited_weights_are_refused(tmp_path):
    from .conftest import make_model_folder

    folder = make_model_folder(tmp_path / "m")
    meta = json.loads((folder / "meta.json").read_text())
    meta["weights_sha256"] = "0" * 64
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="changed after the folder was written"):
        Predictor(folder, settings=PredictorSettings(face_mode="aligned"))


def test_provenance_names_model_weights_libraries_and_settings(aligned_predictor, model_dir):
    prov = aligned_predictor.provenance({"command": "test"}).as_dict()
    assert (
        prov["model"]["weights_sha256"] == hashlib.sha256((model_dir / WEIGHTS_FILE).read_bytes()).hexdigest()
    )
    assert prov["model"]["weights_sha256_recorded"] == prov["model"]["weights_sha256"]
    assert prov["model"]["architecture"] == "tiny-test" and prov["model"]["path"] == str(model_dir.resolve())
    assert prov["libraries"]["torch"].startswith(torch.__version__.split("+")[0])
    assert {"numpy", "open_clip_torch", "pillow", "facenet-pytorch"} <= set(prov["libraries"])
    assert prov["settings"]["threshold"] == 0.9 and prov["settings"]["face_mode"] == "aligned"
    assert prov["time_utc"].endswith("Z") and prov["extra"] == {"command": "test"}


def test_gradcam_follows_the_patch_grid_and_the_class(tiny_cfg):
    model = build_gazeclip(tiny_cfg, WeightSources(pretrained=False), seed=1).eval()
    with torch.no_grad():  # give the LoRA and injectors non-zero values so every class has its own map
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_B" in name or "w_fc" in name):
                p.normal_(0, 0.05)
    g = torch.Generator().manual_seed(0)
    size = tiny_cfg.clip.vision.image_size
    image = torch.rand(1, 3, size, size, generator=g)
    patch = torch.rand(1, 3, 224, 224, generator=g)
    cam = grad_cam(model, image, patch)
    with torch.no_grad():
        predicted = int(model(image, patch).attribution_logits.argmax())
    assert cam.class_index == predicted and cam.heatmap.shape == (size, size)
    maps = [grad_cam(model, image, patch, class_index=c).heatmap for c in range(tiny_cfg.num_classes)]
    assert np.array_equal(maps[predicted], cam.heatmap)
    for m in maps:  # scaled to [0, 1]: peak 1, or all 0 when no patch speaks for the class
        assert m.min() >= 0 and (m.max() == pytest.approx(1.0) or m.max() == 0)
    grid = size // tiny_cfg.clip.vision.patch_size
    cells = [np.unique(np.round(m[:: size // grid, :: size // grid], 4)) for m in maps]
    assert sum(len(c) > 1 for c in cells) >= 2  # maps vary over the patch grid
    assert len({m.tobytes() for m in maps if m.max() > 0}) >= 2  # and with the class explained
    assert all(p.grad is None for p in model.parameters())  # nothing accumulates in the weights


def test_gradcam_needs_the_image_tower(tiny_cfg):
    model = build_gazeclip(replace(tiny_cfg, use_gie=False), WeightSources(pretrained=False)).eval()
    size = tiny_cfg.clip.vision.image_size
    with pytest.raises(ConfigError, match="Grad-CAM needs the GIE"):
        grad_cam(model, torch.rand(1, 3, size, size), torch.rand(1, 3, 224, 224))


def test_gaze_arrow_is_eth_xgaze_draw_gaze():
    # Looking straight at the camera: no arrow; yaw +90 degrees: to the image's left.
    (cx, cy), end = gaze_arrow((0, 0, 100, 100), 0.0, 0.0, 50)
    assert (cx, cy) == (50, 50) and end == pytest.approx((50, 50))
    _, end = gaze_arrow((0, 0, 100, 100), 0.0, math.pi / 2, 50)
    assert end == pytest.approx((0, 50))
    _, end = gaze_arrow((0, 0, 100, 100), math.pi / 6, 0.0, 50)  # pitch up: arrow up
    assert end == pytest.approx((50, 25))
    # Without a normalising rotation the angles stay; a rotation about y shifts the yaw by its angle.
    assert camera_gaze(0.1, -0.2, None) == pytest.approx((0.1, -0.2))
    t = 0.3
    rot_y = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    pitch, yaw = camera_gaze(0.0, 0.0, rot_y)
    assert pitch == pytest.approx(0.0, abs=1e-9) and abs(yaw) == pytest.approx(t)


def test_walk_is_ordered_streaming_and_survives_cycles(tmp_path):
    root = tmp_path / "evidence"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    for p in ("b/2.png", "b/1.JPG", "a/z.png", "top.webp", "notes.txt", "clip.mp4"):
        (root / p).write_bytes(b"x")
    os.symlink(root, root / "a" / "back")  # a cycle back to the root
    os.symlink("missing.png", root / "gone.png")
    items = list(iter_inputs([root, root / "top.webp"]))  # the second root is a file: an input itself
    names = [os.path.relpath(i.path, root) for i in items]
    assert names == [
        "a/back",
        "a/z.png",
        "b/1.JPG",
        "b/2.png",
        "clip.mp4",
        "gone.png",
        "top.webp",
        "top.webp",
    ]
    assert "symbolic link cycle" in items[0].error and items[0].kind == "folder"
    assert [i.kind for i in items[1:]] == ["image", "image", "image", "video", "image", "image", "image"]
    assert all(i.error is None for i in items[1:])
    gen = iter_inputs([root])
    assert next(gen).path.endswith("back")  # a generator: items come before the walk ends


def test_printable_path_keeps_rows_on_one_line():
    weird = os.fsdecode(b"/ev/caf\xe9\nnew.png")
    assert printable_path(weird) == "/ev/caf\\xe9\\x0anew.png"


def test_scan_restores_the_process_settings_it_tunes(aligned_predictor, tmp_path):
    import sys

    from gazeclip_cli.core.inference.scan import scan

    aligned_images(tmp_path / "in", 2)
    threads, interval, cv2_threads = torch.get_num_threads(), sys.getswitchinterval(), cv2.getNumThreads()
    summary = scan(aligned_predictor, [tmp_path / "in"], tmp_path / "r.csv", workers=1, model_threads=1)
    assert summary.files == 2 and summary.faces == 2
    assert torch.get_num_threads() == threads and sys.getswitchinterval() == interval
    assert cv2.getNumThreads() == cv2_threads
    with pytest.raises(ConfigError, match="model threads"):
        scan(aligned_predictor, [tmp_path / "in"], tmp_path / "s.csv", model_threads=0)


def test_every_thread_layout_gives_the_same_rows(aligned_predictor, tmp_path):
    from gazeclip_cli.core.inference.scan import scan

    aligned_images(tmp_path / "in", 8)  # batch size 3: two full batches and a partial one
    outputs = {}
    # All in the calling thread; one worker preparing and running batches; three workers
    # with batches in flight side by side. One intra-op thread each, so the kernels agree.
    for workers in (0, 1, 3):
        out = tmp_path / f"w{workers}.csv"
        summary = scan(aligned_predictor, [tmp_path / "in"], out, workers=workers, model_threads=1)
        assert summary.files == 8 and summary.faces == 8
        outputs[workers] = out.read_bytes()
    assert outputs[0] == outputs[1] == outputs[3]
    # Two intra-op threads per forward: the same verdicts, probabilities to float rounding.
    out = tmp_path / "t2.csv"
    scan(aligned_predictor, [tmp_path / "in"], out, workers=2, model_threads=2)
    one, two = (list(csv.DictReader(io.StringIO(b.decode()))) for b in (outputs[0], out.read_bytes()))
    assert [r["file"] for r in one] == [r["file"] for r in two]
    assert [(r["verdict"], r["generator"]) for r in one] == [(r["verdict"], r["generator"]) for r in two]
    assert np.allclose([float(r["p_fake"]) for r in one], [float(r["p_fake"]) for r in two], atol=1e-5)
