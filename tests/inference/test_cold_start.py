"""Cold start: what `attribute` imports, and the weight checksum cache that spares re-hashing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gazeclip_cli.core.weights import checksums
from gazeclip_cli.core.weights.checksums import CACHE_FILE, cached_sha256

# Modules of the train path and of the text tower: the test path never runs them.
NOT_ON_THE_TEST_PATH = (
    "gazeclip_cli.core.train",
    "gazeclip_cli.core.model.text_encoder",
    "gazeclip_cli.core.model.prompts",
    "gazeclip_cli.core.model.loss",
    "gazeclip_cli.core.evaluate.runner",
    "facenet_pytorch",
    "peft",  # LoRA is loaded merged (core/model/folder.py: merge_lora)
    "transformers",  # open_clip's optional Hugging Face towers (core/model/openclip.py)
)

# The torch network's modules: with an ONNX export the forward needs none of them (nor Grad-CAM's
# torch model) unless a heatmap is asked for.
TORCH_NETWORK = (
    "open_clip",
    "torchvision",
    "timm",
    "gazeclip_cli.core.model.builder",
    "gazeclip_cli.core.model.gazeclip",
    "gazeclip_cli.core.model.clip_towers",
    "gazeclip_cli.core.model.image_encoder",
    "gazeclip_cli.core.model.optimize",
)

IMPORT_AND_LIST_MODULES = """
import json, sys
import gazeclip_cli.cli.app
import gazeclip_cli.core.inference.predictor
import gazeclip_cli.core.inference.report_html
import gazeclip_cli.core.inference.scan
print("MODULES " + json.dumps(sorted(sys.modules)))
"""

ATTRIBUTE_AND_LIST_MODULES = """
import json, sys
from gazeclip_cli.cli.app import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("MODULES " + json.dumps(sorted(sys.modules)))
"""


def test_attribute_imports_neither_train_nor_text_tower(model_dir, tmp_path):
    from PIL import Image

    from tests.inference.conftest import astronaut_path

    photo = tmp_path / "face.png"
    Image.open(astronaut_path()).convert("RGB").crop((125, 10, 325, 210)).save(photo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", ATTRIBUTE_AND_LIST_MODULES, "attribute", str(photo), "--model", str(model_dir)]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out, _, listed = run.stdout.rpartition("MODULES ")
    modules = set(json.loads(listed))
    assert json.loads(out)["results"][0]["faces"], "the photo's face was scored"  # the test path ran
    assert (
        "gazeclip_cli.core.inference.predictor" in modules and "gazeclip_cli.core.model.gazeclip" in modules
    )
    loaded = sorted(m for m in modules if m.startswith(NOT_ON_THE_TEST_PATH))
    assert loaded == []


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}


def _face_photo(tmp_path: Path) -> Path:
    from PIL import Image

    from tests.inference.conftest import astronaut_path

    photo = tmp_path / "face.png"
    Image.open(astronaut_path()).convert("RGB").crop((125, 10, 325, 210)).save(photo)
    return photo


def test_the_import_path_of_attribute_and_scan_loads_no_network_module():
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_LIST_MODULES],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    modules = set(json.loads(run.stdout.rpartition("MODULES ")[2]))
    assert "gazeclip_cli.core.inference.predictor" in modules and "torch" in modules
    loaded = sorted(m for m in modules if m.startswith(NOT_ON_THE_TEST_PATH + TORCH_NETWORK))
    assert loaded == []


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory):
    """A tiny-test model folder of its own with an fp32 ONNX export (auto runs it on the CPU)."""
    from gazeclip_cli.core.inference.fast_cpu import export_model_folder
    from tests.inference.conftest import make_model_folder

    folder = make_model_folder(tmp_path_factory.mktemp("exported") / "model")
    export_model_folder(folder, "onnx")
    return folder


@pytest.mark.parametrize("runtime", ["onnx", "auto"])
def test_an_onnx_attribute_run_builds_no_torch_model(exported_dir, tmp_path, runtime):
    photo = _face_photo(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            ATTRIBUTE_AND_LIST_MODULES,
            "attribute",
            str(photo),
            "--model",
            str(exported_dir),
        ]
        + ["--format", "json", "--runtime", runtime],
        capture_output=True,
        text=True,
        env={**_subprocess_env(), "GAZECLIP_CACHE_DIR": str(tmp_path / "checksums")},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out, _, listed = run.stdout.rpartition("MODULES ")
    modules = set(json.loads(listed))
    report = json.loads(out)
    assert report["results"][0]["faces"], "the photo's face was scored"  # MTCNN and the ONNX forward ran
    assert "onnxruntime" in modules and "gazeclip_cli.core.data.mtcnn_nets" in modules
    loaded = sorted(m for m in modules if m.startswith(NOT_ON_THE_TEST_PATH + TORCH_NETWORK))
    assert loaded == []
    # The provenance still names the runtime, its graph and the weights' SHA-256 (from the hash cache).
    settings, model = report["provenance"]["settings"], report["provenance"]["model"]
    weights = (exported_dir / "weights.safetensors").read_bytes()
    assert model["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert settings["runtime"] == "onnx"
    graph = (exported_dir / "onnx.onnx").read_bytes()
    assert settings["runtime_export"]["onnx_sha256"] == hashlib.sha256(graph).hexdigest()


def test_an_onnx_predictor_builds_the_torch_model_for_grad_cam_only(exported_dir, tmp_path):
    import numpy as np

    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
    from tests.inference.conftest import aligned_images

    def predictor(runtime: str) -> Predictor:
        return Predictor(exported_dir, settings=PredictorSettings(face_mode="aligned", runtime=runtime))

    fast, ref = predictor("onnx"), predictor("torch")
    assert ref.model_loaded and not fast.model_loaded
    faces = [f for p in aligned_images(tmp_path, 2) for f in fast.prepare(p).faces]
    got, want = fast.predict_faces(faces), ref.predict_faces(faces)
    assert not fast.model_loaded  # verdicts came from ONNX Runtime alone
    assert fast.experts == ref.model.experts and fast.class_names == ref.class_names
    assert fast.uses_gaze == ref.model.uses_gaze and fast.image_size == ref.model.cfg.image_size
    for a, b in zip(got, want, strict=True):
        assert a.generator == b.generator and abs(a.p_fake - b.p_fake) < 1e-5
    heat = fast.gradcam(faces[0])  # a heatmap needs the torch model: built now, on first use
    assert fast.model_loaded
    np.testing.assert_allclose(heat.heatmap, ref.gradcam(faces[0]).heatmap, atol=1e-5)
    assert fast.pretrained_files() == ref.pretrained_files() == {}  # random towers: no weight files


def _count_hashing(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = checksums.sha256_file

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checksums, "sha256_file", counting)
    return calls


def test_checksum_cache_hashes_once_and_rehashes_on_change(tmp_path, monkeypatch):
    calls = _count_hashing(monkeypatch)
    cache = tmp_path / "cache"
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"a" * 1000)
    assert cached_sha256(f, cache) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert cached_sha256(f, cache) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert len(calls) == 1  # the second call read the cache, not the file

    # Same size, mtime put back: the ctime still changed, so the file is hashed again.
    st = f.stat()
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert cached_sha256(f, cache) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert len(calls) == 2

    f.write_bytes(b"b" * 1001)  # another size
    assert cached_sha256(f, cache) == hashlib.sha256(b"b" * 1001).hexdigest()
    replacement = tmp_path / "new"  # another inode with the same bytes: hashed again, same value
    replacement.write_bytes(b"b" * 1001)
    os.replace(replacement, f)
    assert cached_sha256(f, cache) == hashlib.sha256(b"b" * 1001).hexdigest()
    assert len(calls) == 4
    assert cached_sha256(f, cache) == hashlib.sha256(b"b" * 1001).hexdigest()
    assert len(calls) == 4


def test_checksum_cache_entry_and_unusable_cache(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"xyz")
    cache = tmp_path / "cache"
    cached_sha256(f, cache)
    entry = json.loads((cache / CACHE_FILE).read_text())[os.path.realpath(f)]
    st = f.stat()
    assert entry == {
        "identity": [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev],
        "sha256": hashlib.sha256(b"xyz").hexdigest(),
    }
    (cache / CACHE_FILE).write_text("{torn")  # a damaged cache is ignored and rewritten
    assert cached_sha256(f, cache) == hashlib.sha256(b"xyz").hexdigest()
    assert os.path.realpath(f) in json.loads((cache / CACHE_FILE).read_text())
    blocked = tmp_path / "a-file"  # the cache folder cannot be made: the hash is still right
    blocked.write_text("")
    assert cached_sha256(f, blocked / "sub") == hashlib.sha256(b"xyz").hexdigest()


def test_checksum_cache_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GAZECLIP_CACHE_DIR", str(tmp_path / "x"))
    assert checksums.checksum_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("GAZECLIP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checksums.checksum_cache_dir() == tmp_path / "xdg" / "gazeclip"


def test_predictor_refuses_weights_changed_after_caching(model_dir, tmp_path):
    import shutil

    from gazeclip_cli.core.errors import ModelFolderError
    from gazeclip_cli.core.inference.predictor import Predictor

    folder = Path(shutil.copytree(model_dir, tmp_path / "m"))
    Predictor(folder)  # hashes and remembers
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last tensor byte: the file still parses, its hash differs
    st = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ModelFolderError, match="differs from the one meta.json"):
        Predictor(folder)


def test_model_folder_weights_are_mapped_not_copied(model_dir):
    import torch
    from safetensors.torch import load_file

    from gazeclip_cli.core.inference.predictor import Predictor
    from gazeclip_cli.core.model.folder import load_model_folder

    weights = model_dir / "weights.safetensors"
    expected = load_file(str(weights))
    state = load_model_folder(model_dir).model.state_dict()
    assert set(expected) <= set(state)
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
        # A view of one storage spanning the whole file: the memory map, not a copy per tensor.
        assert state[name].untyped_storage().nbytes() == weights.stat().st_size, name
    fast = Predictor(model_dir).model.gie.visual.transformer.resblocks[0].mlp.c_fc
    assert fast.weight.untyped_storage().nbytes() == weights.stat().st_size  # optimize_for_inference kept it


def test_merged_lora_model_equals_the_peft_model(model_dir, tiny_batch):
    import torch

    from gazeclip_cli.core.model.folder import load_model_folder

    images, patches, _, _ = tiny_batch
    peft_model = load_model_folder(model_dir).model
    merged = load_model_folder(model_dir, with_text=False).model
    lora_layers = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert lora_layers and not [n for n, _ in merged.named_modules() if "lora_" in n]
    with torch.no_grad():
        want, got = peft_model(images, patches), merged(images, patches)
    torch.testing.assert_close(got.attribution_logits, want.attribution_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.detection_logits, want.detection_logits, rtol=0, atol=1e-5)
    # One merged weight by hand: W + B A alpha / r, from the folder's own tensors.
    from safetensors.torch import load_file

    t = load_file(str(model_dir / "weights.safetensors"))
    name = lora_layers[0][: -len(".lora_A")]
    by_hand = t[name + ".base_layer.weight"] + t[name + ".lora_B.default.weight"] @ t[
        name + ".lora_A.default.weight"
    ] * (16 / 4)
    torch.testing.assert_close(merged.state_dict()[name + ".weight"], by_hand, rtol=0, atol=1e-6)
