"""Level-4 prompt names: protocol -> manifest -> cache -> model classes -> prompt text; old files still read."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gazeclip_cli.core.data.cache import classes_of, read_cache
from gazeclip_cli.core.data.manifest import LEGACY_COLUMNS, ManifestRow, read_manifest, write_manifest
from gazeclip_cli.core.data.protocol import load_protocol, parse_protocol
from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.config import PAPER_CLASSES, ClassSpec
from gazeclip_cli.core.model.prompts import class_prompts, load_templates
from gazeclip_cli.core.train.run_config import RunConfig, model_config

PROTOCOL = Path(__file__).resolve().parents[2] / "configs" / "protocol.toml"
LEVEL4 = "the source generative model of this photo is {}"


def test_the_shipped_protocol_names_the_genface_generators_as_the_paper():
    protocol = load_protocol(PROTOCOL)
    names = {g.name: g.prompt_name for g in protocol.seen()}
    assert names["LatDiff"] == "LatentDiffusion"  # Fig. 11
    assert names["Diffae"] == "DiffusionAutoencoders" and names["CollDiff"] == "CollaborativeDiffusion"
    assert names["LatTrans"] == "LatentTransformer"
    assert names["StyleGAN2"] == "StyleGAN2" and names["CelebA-HQ"] == "CelebA-HQ"  # default: the name
    assert all(g.prompt_name == g.name for g in protocol.unseen())
    # the architecture's default classes say the same
    assert {c.name: c.prompt_generator for c in PAPER_CLASSES} == names


def test_an_empty_prompt_name_is_a_config_error():
    data = {
        "name": "p",
        "seed": 1,
        "sources": {"S": {}},
        "generators": [
            {"name": "R", "source": "S", "role": "seen", "forgery_type": "Real", "architecture": "Real",
             "dfd_label": 0, "dfa_label": 0, "train": 2, "test": 1, "aliases": ["r"]},
            {"name": "G", "source": "S", "role": "seen", "forgery_type": "EFS", "architecture": "GAN",
             "dfd_label": 1, "dfa_label": 1, "train": 2, "test": 1, "aliases": ["g"], "prompt_name": " "},
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError, match="prompt_name cannot be empty"):
        parse_protocol(data)


def test_prompt_name_round_trips_the_manifest_and_old_manifests_read(tmp_path):
    rows = [ManifestRow(str(tmp_path / "a.png"), "train", 1, 3, "LatDiff", "EFS", "Diffusion", "GenFace", "", None,
                        "LatentDiffusion")]  # fmt: skip
    write_manifest(tmp_path / "m.csv", rows)
    assert read_manifest(tmp_path / "m.csv").rows[0].prompt_name == "LatentDiffusion"
    old = tmp_path / "old.csv"
    old.write_text(",".join(LEGACY_COLUMNS) + "\na.png,train,1,3,LatDiff,EFS,Diffusion,GenFace,,\n")
    assert read_manifest(old).rows[0].prompt_name == ""


def _cache(folder: Path, with_column: bool) -> Path:
    folder.mkdir()
    columns = ["crop_path", "patch_path", "split", "dfd_label", "dfa_label", "generator", "forgery_type",
               "architecture"] + (["prompt_name"] if with_column else [])  # fmt: skip
    rows = [
        ["c0.png", "p0.png", "train", "0", "0", "CelebA-HQ", "Real", "Real"] + ([""] if with_column else []),
        ["c1.png", "p1.png", "train", "1", "1", "LatDiff", "EFS", "Diffusion"]
        + (["LatentDiffusion"] if with_column else []),
    ]
    with open(folder / "preprocessed.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([columns, *rows])
    return folder


@pytest.mark.parametrize("with_column", [True, False], ids=["cache", "old cache"])
def test_the_cache_gives_the_model_its_prompt_names(tmp_path, with_column):
    rows = read_cache(_cache(tmp_path / "cache", with_column)).rows
    cfg = model_config(RunConfig(architecture="tiny-test"), classes_of(rows))
    latdiff = cfg.classes[1]
    expected = "LatentDiffusion" if with_column else "LatDiff"
    assert latdiff == ClassSpec("LatDiff", "EFS", "Diffusion", expected if with_column else "")
    assert class_prompts(latdiff, (4,), load_templates()) == [LEVEL4.format(expected)]
