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
