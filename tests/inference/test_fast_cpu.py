"""The fast CPU runtime: ONNX exports of a model folder, their parity with torch, staleness, provenance."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.errors import ConfigError, InputError, ModelFolderError
from gazeclip_cli.core.inference.fast_cpu import (
    Calibration,
    MatrixAdaptivePool,
    calibration_from,
    export_files,
    export_model_folder,
    resolve_runtime,
)
from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.folder import save_model_folder

from .conftest import aligned_images, make_model_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny-test folder of its own (auto picks an export up) with both exports."""
    folder = make_model_folder(tmp_path_factory.mktemp("fast") / "model")
    records = {rt: export_model_folder(folder, rt) for rt in ("onnx", "onnx-int8")}
    return folder, records


@pytest.fixture(scope="module")
def faces(exported, tmp_path_factory):
    folder, _ = exported
    predictor = Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="torch"))
    paths = aligned_images(tmp_path_factory.mktemp("imgs"), 7)
    return [f for p in paths for f in predictor.prepare(p).faces]


def _predict(folder, runtime, faces, batch_size=4):
    settings = PredictorSettings(face_mode="aligned", runtime=runtime, batch_size=batch_size)
    predictor = Predictor(folder, settings=settings)
    return predictor, predictor.predict_faces(faces)


def test_matrix_pool_is_torch_adaptive_pooling():
    # 3 -> 2 by hand: windows [0, 2) and [1, 3) on each axis.
    x = torch.arange(9.0).view(1, 1, 3, 3)
    want = torch.tensor(
        [[(0 + 1 + 3 + 4) / 4, (1 + 2 + 4 + 5) / 4], [(3 + 4 + 6 + 7) / 4, (4 + 5 + 7 + 8) / 4]]
    )
    assert torch.allclose(MatrixAdaptivePool(3, 2)(x)[0, 0], want)
    for n_in, n_out in ((8, 7), (10, 7), (7, 3)):
        x = torch.randn(2, 5, n_in, n_in)
        assert torch.allclose(MatrixAdaptivePool(n_in, n_out)(x), nn.AdaptiveAvgPool2d(n_out)(x), atol=1e-6)


def test_export_record_names_its_source(exported):
    folder, records = exported
    import onnxruntime

    weights_sha = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    for runtime, record in records.items():
        graph, record_file = export_files(folder, runtime)
        assert graph.is_file() and record_file.is_file()
        assert record.runtime == runtime and record.weights_sha256 == weights_sha
        assert record.onnx_sha256 == hashlib.sha256(graph.read_bytes()).hexdigest()
        assert (
            record.onnxruntime_version == onnxruntime.__version__
            and record.torch_version == torch.__version__
        )
        assert json.loads(record_file.read_text())["weights_sha256"] == weights_sha
        assert record.inputs == ("images", "patches")
    assert records["onnx"].check_max_abs_diff < 1e-4  # fp32: float rounding only


def test_onnx_equals_torch_and_int8_is_within_the_goals(exported, faces):
    folder, _ = exported
    _, ref = _predict(folder, "torch", faces)
    _, fp32 = _predict(folder, "onnx", faces, batch_size=3)  # another batch size than the export's check
    _, int8 = _predict(folder, "onnx-int8", faces)
    assert len(ref) == len(faces) == 7
    for a, b in zip(ref, fp32, strict=True):
        assert a.verdict == b.verdict and a.generator == b.generator
        assert abs(a.p_fake - b.p_fake) < 1e-5
        assert np.abs(np.subtract(a.probabilities, b.probabilities)).max() < 1e-5
        assert abs(a.gaze_pitch - b.gaze_pitch) < 1e-5 and abs(a.gaze_yaw - b.gaze_yaw) < 1e-5
    for a, b in zip(ref, int8, strict=True):
        assert abs(a.p_fake - b.p_fake) <= 0.02
        assert np.abs(np.subtract(a.probabilities, b.probabilities)).max() <= 0.02


def test_auto_picks_the_export_and_provenance_names_the_runtime(exported, model_dir):
    folder, records = exported
    predictor = Predictor(folder, settings=PredictorSettings(face_mode="aligned"))
    assert predictor.runtime == "onnx" and predictor.settings.runtime == "onnx"
    settings = predictor.provenance().as_dict()["settings"]
    assert settings["runtime"] == "onnx"
    assert settings["runtime_export"]["onnx_sha256"] == records["onnx"].onnx_sha256
    plain = Predictor(model_dir, settings=PredictorSettings(face_mode="aligned"))  # no export: torch
    assert plain.runtime == "torch" and plain.provenance().as_dict()["settings"]["runtime_export"] is None
    assert plain.forward is plain.model


def test_missing_and_stale_exports_say_what_to_run(exported, tmp_path):
    folder = shutil.copytree(exported[0], tmp_path / "model")
    (folder / "onnx-int8.onnx").unlink()
    with pytest.raises(
        ModelFolderError, match=r"no onnx-int8 export.*gazeclip export .* --runtime onnx-int8"
    ):
        Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="onnx-int8"))
    # Retrained into the same folder: new weights and meta.json, the old export.
    save_model_folder(
        build_gazeclip(load_architecture("tiny-test"), WeightSources(pretrained=False), seed=1), folder
    )
    for runtime in ("onnx", "auto"):
        with pytest.raises(ModelFolderError, match=r"stale export.*run `gazeclip export .*model`$"):
            Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime=runtime))
    assert (
        Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="torch")).runtime == "torch"
    )


def test_onnx_runs_on_the_cpu_only(exported):
    folder, records = exported
    sha = records["onnx"].weights_sha256
    assert resolve_runtime("auto", torch.device("cuda"), folder, sha, "x") == ("torch", None)
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_runtime("onnx", torch.device("cuda"), folder, sha, "x")
    with pytest.raises(ConfigError, match="runtime 'tensorrt'"):
        PredictorSettings(runtime="tensorrt")


def test_export_and_runtime_on_the_command_line(tmp_path, face_photo):
    from .conftest import png_bytes

    folder = make_model_folder(tmp_path / "model")
    result = runner.invoke(app, ["export", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["runtime"] == "onnx" and (folder / "onnx.onnx").is_file()
    assert (
        record["weights_sha256"] == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    )
    bad = runner.invoke(app, ["export", str(folder), "--runtime", "tensorrt"])
    assert bad.exit_code == 2 and "onnx or onnx-int8" in bad.output
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(png_bytes(face_photo))
    runs = {}
    for runtime in ("torch", "onnx"):
        args = ["attribute", str(photo), "--model", str(folder), "--runtime", runtime, "--format", "json"]
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
        runs[runtime] = json.loads(out.stdout)
        assert runs[runtime]["provenance"]["settings"]["runtime"] == runtime
    a, b = (runs[r]["results"][0]["faces"][0] for r in ("torch", "onnx"))
    assert a["verdict"] == b["verdict"] and abs(a["p_fake"] - b["p_fake"]) < 1e-5
    missing = runner.invoke(app, ["attribute", str(photo), "--model", str(folder), "--runtime", "onnx-int8"])
    assert missing.exit_code == 1 and "gazeclip export" in missing.output


@pytest.mark.slow
def test_demo_small_export_is_within_tolerance(tmp_path):
    """The demo's architecture (its small CNN gaze estimator, CLIP-like towers) exports alike."""
    model = build_gazeclip(load_architecture("demo-small"), WeightSources(pretrained=False), seed=0)
    folder = save_model_folder(model, tmp_path / "demo")
    from gazeclip_cli.core.demo.calibration import demo_calibration

    for runtime in ("onnx", "onnx-int8"):
        export_model_folder(folder, runtime)
    renders = demo_calibration(tmp_path / "calib", per_class=1)
    calibration = Calibration(files=renders.files, source=renders.source, aligned=True)
    export_model_folder(folder, "onnx-int8-static", calibration=calibration)
    images = aligned_images(tmp_path / "imgs", 5, size=256)
    prep = Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="torch"))
    faces = [f for p in images for f in prep.prepare(p).faces]
    _, ref = _predict(folder, "torch", faces)
    for runtime, tol in (("onnx", 1e-5), ("onnx-int8", 0.02), ("onnx-int8-static", 0.02)):
        _, got = _predict(folder, runtime, faces)
        for a, b in zip(ref, got, strict=True):
            assert abs(a.p_fake - b.p_fake) <= tol
            assert np.abs(np.subtract(a.probabilities, b.probabilities)).max() <= tol


def test_scan_provenance_names_the_runtime_and_a_resume_keeps_it(exported, tmp_path):
    from gazeclip_cli.core.inference.scan import provenance_path, scan

    folder, _ = exported
    paths = aligned_images(tmp_path / "imgs", 3)
    fast = Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="onnx"))
    out = tmp_path / "scan.jsonl"
    summary = scan(fast, paths, out, workers=2)
    assert summary.files_this_run == 3
    settings = json.loads(provenance_path(out).read_text())["provenance"]["settings"]
    assert settings["runtime"] == "onnx" and settings["runtime_export"]["runtime"] == "onnx"
    torch_run = Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="torch"))
    with pytest.raises(ConfigError, match="runtime='onnx', resumed with runtime='torch'"):
        scan(torch_run, paths, out, resume=True)


def test_scan_command_takes_the_runtime(exported, tmp_path):
    folder, _ = exported
    paths = aligned_images(tmp_path / "imgs", 2)
    out = tmp_path / "scan.jsonl"
    args = ["scan", str(tmp_path / "imgs"), "--model", str(folder), "--aligned", "--out", str(out), "-q"]
    result = runner.invoke(app, [*args, "--runtime", "onnx-int8"])
    assert result.exit_code == 0, result.output
    prov = json.loads((tmp_path / "scan.jsonl.provenance.json").read_text())["provenance"]
    assert prov["settings"]["runtime"] == "onnx-int8" and len(paths) == 2


# Static int8 (onnx-int8-static): calibrated on prepared faces, every convolution quantised.


@pytest.fixture(scope="module")
def static_export(exported, tmp_path_factory):
    """The tiny folder's static int8 export, calibrated on the demo's renders (aligned, as the tiny model's)."""
    from gazeclip_cli.core.demo.calibration import demo_calibration

    folder, _ = exported
    renders = demo_calibration(tmp_path_factory.mktemp("calib"), per_class=2)
    calibration = Calibration(files=renders.files, source=renders.source, aligned=True)
    return folder, calibration, export_model_folder(folder, "onnx-int8-static", calibration=calibration)


def test_static_export_records_its_calibration_as_measured_again(static_export):
    import onnxruntime

    from gazeclip_cli.core.demo.synthetic import GENERATORS

    folder, calibration, record = static_export
    info = record.calibration
    assert record.runtime == "onnx-int8-static" and info["source"] == calibration.source
    assert info["files"] == len(calibration.files) == 2 * len(GENERATORS)
    assert info["faces"] == info["files"] and info["face_mode"] == "aligned"  # one face per aligned crop
    # The inputs and the differences again, independently: the torch predictor's faces, 8 a batch.
    predictor = Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="torch"))
    faces = [f for p in calibration.files for f in predictor.prepare(p).faces]
    session = onnxruntime.InferenceSession(str(export_files(folder, "onnx-int8-static")[0]))
    digest, worst = hashlib.sha256(), dict.fromkeys(record.outputs, 0.0)
    for start in range(0, len(faces), 8):
        images, patches = predictor.input_tensors(faces[start : start + 8])
        digest.update(images.numpy().tobytes())
        digest.update(patches.numpy().tobytes())
        with torch.inference_mode():
            want = predictor.model(images, patches)
        got = session.run(list(record.outputs), {"images": images.numpy(), "patches": patches.numpy()})
        for name, value in zip(record.outputs, got, strict=True):
            diff = float(np.abs(value - getattr(want, name).numpy()).max())
            worst[name] = max(worst[name], diff)
    assert info["inputs_sha256"] == digest.hexdigest()
    for name in record.outputs:
        assert info["max_abs_diff"][name] == pytest.approx(worst[name], rel=1e-3, abs=1e-6)
    assert max(worst.values()) > 1e-4  # int8, not the fp32 graph under another name


def test_static_int8_quantises_convolutions_and_products_and_keeps_the_appearance_encoder_and_heads_fp32(
    static_export,
):
    import onnx

    folder, _, _ = static_export
    graph = onnx.load(str(export_files(folder, "onnx-int8-static")[0])).graph
    made_by = {out: node for node in graph.node for out in node.output}

    def dequantised(node, i):
        src = made_by.get(node.input[i])
        return src is not None and src.op_type == "DequantizeLinear"

    convs = [n for n in graph.node if n.op_type == "Conv"]
    appearance = [n for n in convs if "/agpm/encoder/" in n.name]  # the AGPM's encoder stays fp32
    assert appearance and not any(dequantised(n, 1) for n in appearance)
    others = [n for n in convs if n not in appearance]
    assert any("/gaze_encoder/" in n.name for n in others) and any("/gie/" in n.name for n in others)
    assert all(dequantised(n, 0) and dequantised(n, 1) for n in others)
    products = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    heads = [n for n in products if "expert" in n.name or "fuse_" in n.name]
    assert heads and not any(dequantised(n, 1) for n in heads)  # their weights stay fp32
    assert any(dequantised(n, 1) for n in products if "/agpm/" in n.name)  # the AGPM's products: static
    weights = {t.name for t in graph.initializer}
    tower = [n for n in graph.node if "/gie/" in n.name]
    assert any(n.op_type == "MatMulInteger" for n in tower)  # the image tower's products: dynamic int8
    assert not any(n.op_type == "MatMul" and n.input[1] in weights for n in tower)  # none left in fp32


def test_static_int8_is_within_the_goals_on_faces_it_was_not_calibrated_on(static_export, tmp_path):
    from gazeclip_cli.core.demo.synthetic import GENERATORS, generate_sample

    folder, _, _ = static_export
    predictor = Predictor(folder, settings=PredictorSettings(face_mode="aligned", runtime="torch"))
    images = [generate_sample(g, 0, i, "test").image for g in GENERATORS for i in range(2)]
    faces = [f for im in images for f in predictor.prepare_image(im).faces]
    faces += [f for p in aligned_images(tmp_path, 4) for f in predictor.prepare(p).faces]
    _, ref = _predict(folder, "torch", faces)
    fast, got = _predict(folder, "onnx-int8-static", faces)
    assert fast.runtime == "onnx-int8-static" and len(got) == len(faces) == 2 * len(GENERATORS) + 4
    for a, b in zip(ref, got, strict=True):
        assert abs(a.p_fake - b.p_fake) <= 0.02
        assert np.abs(np.subtract(a.probabilities, b.probabilities)).max() <= 0.02
    settings = fast.provenance().as_dict()["settings"]
    assert settings["runtime"] == "onnx-int8-static"
    assert settings["runtime_export"]["runtime"] == "onnx-int8-static"


def test_static_int8_needs_enough_calibration_faces(exported, tmp_path):
    folder, _ = exported
    with pytest.raises(ConfigError, match="calibrates on faces"):
        export_model_folder(folder, "onnx-int8-static")
    aligned_images(tmp_path / "few", 3)
    few = calibration_from([tmp_path / "few"], aligned=True)
    with pytest.raises(InputError, match=r"3 faces from 3 files .*at least 8"):
        export_model_folder(folder, "onnx-int8-static", calibration=few)
    with pytest.raises(InputError, match=r"nowhere: not found"):
        calibration_from([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no images or videos to calibrate on"):
        calibration_from([tmp_path / "empty"])


def test_export_command_calibrates_on_a_folder_or_on_the_demo_renders(tmp_path):
    from gazeclip_cli.core.demo.synthetic import GENERATORS

    folder = make_model_folder(tmp_path / "model")
    aligned_images(tmp_path / "faces", 9)
    args = ["export", str(folder), "--runtime", "onnx-int8-static", "--format", "json"]
    result = runner.invoke(app, [*args, "--calibration", str(tmp_path / "faces"), "--aligned"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["runtime"] == "onnx-int8-static" and record["calibration"]["faces"] == 9
    assert record["calibration"]["source"] == str(tmp_path / "faces")
    default = runner.invoke(app, [*args, "--aligned"])
    assert default.exit_code == 0, default.output
    calibration = json.loads(default.stdout)["calibration"]
    assert calibration["faces"] == 4 * len(GENERATORS) and "synthetic renders" in calibration["source"]
    table = runner.invoke(app, ["export", str(folder), "--runtime", "onnx-int8-static", "--aligned"])
    assert table.exit_code == 0 and f"{4 * len(GENERATORS)} from {4 * len(GENERATORS)} files" in table.stdout
    bad = runner.invoke(app, ["export", str(folder), "--calibration", str(tmp_path / "faces")])
    assert bad.exit_code == 2 and "onnx-int8-static only" in bad.output
