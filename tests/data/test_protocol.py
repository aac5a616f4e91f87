"""The protocol file: the shipped Table I protocol is exactly the paper's, and bad files fail clearly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gazeclip_cli.core.data.protocol import load_protocol, normalize_name, parse_protocol
from gazeclip_cli.core.errors import ConfigError

PROTOCOL = Path(__file__).resolve().parents[2] / "configs" / "protocol.toml"
TINY = Path(__file__).with_name("tiny_protocol.toml")

# The paper's Table I: name -> (source, forgery type, architecture, DFD, DFA).
TABLE_I_SEEN = {
    "DiffFace": ("GenFace", "FS", "Diffusion", 1, 1),
    "Diffae": ("GenFace", "AM", "Diffusion", 1, 2),
    "LatDiff": ("GenFace", "EFS", "Diffusion", 1, 3),
    "CollDiff": ("GenFace", "EFS", "Diffusion", 1, 4),
    "DDPM": ("GenFace", "EFS", "Diffusion", 1, 5),
    "FSLSD": ("GenFace", "FS", "GAN", 1, 6),
    "FaceSwapper": ("GenFace", "FS", "GAN", 1, 7),
    "LatTrans": ("GenFace", "AM", "GAN", 1, 8),
    "StyleGAN2": ("GenFace", "EFS", "GAN", 1, 9),
    "StyleGAN3": ("GenFace", "EFS", "GAN", 1, 10),
    "CelebA-HQ": ("CelebA-HQ", "Real", "Real", 0, 0),
}
TABLE_I_UNSEEN = {
    "VQGAN": ("DF40", "EFS", "GAN", 1),
    "SD-2.1": ("DF40", "EFS", "Diffusion", 1),
    "DiT": ("DF40", "EFS", "Diffusion", 1),
    "SiT": ("DF40", "EFS", "Diffusion", 1),
    "SimSwap": ("DF40", "FS", "GAN", 1),
    "UniFace": ("DF40", "FS", "GAN", 1),
    "InSwapper": ("DF40", "FS", "GAN", 1),
    "e4s": ("DF40", "FS", "GAN", 1),
    "REFace": ("REFace", "FS", "Diffusion", 1),
    "LivePortrait": ("Celeb-DF++", "FR", "GAN", 1),
    "LIA": ("Celeb-DF++", "FR", "Flow", 1),
    "FSRT": ("Celeb-DF++", "FR", "GAN", 1),
    "DiffusionAct": ("DiffusionAct", "FR", "Diffusion", 1),
    "Real3DPortrait": ("Celeb-DF++", "TF", "GAN", 1),
    "AniTalker": ("Celeb-DF++", "TF", "Diffusion", 1),
    "FLOAT": ("Celeb-DF++", "TF", "Flow", 1),
    "EDTalk": ("Celeb-DF++", "TF", "Flow", 1),
    "FLUX": ("FLUX", "EFS", "Flow", 1),
    "FFHQ": ("FFHQ", "Real", "Real", 0),
}


def _raw() -> dict:
    return tomllib.loads(PROTOCOL.read_text(encoding="utf-8"))


def test_shipped_protocol_is_table_i():
    p = load_protocol(PROTOCOL)
    for name, (source, ftype, arch, dfd, dfa) in TABLE_I_SEEN.items():
        g = p.generator(name)
        assert (g.source, g.forgery_type, g.architecture, g.dfd_label, g.dfa_label) == (
            source,
            ftype,
            arch,
            dfd,
            dfa,
        )
        assert (g.role, g.train, g.test) == ("seen", 10_000, 1_250)
        assert g.wanted() == {"train": 9_500, "val": 500, "test": 1_250}
    for name, (source, ftype, arch, dfd) in TABLE_I_UNSEEN.items():
        g = p.generator(name)
        assert (g.source, g.forgery_type, g.architecture, g.dfd_label, g.dfa_label) == (
            source,
            ftype,
            arch,
            dfd,
            -1,
        )
        assert (g.role, g.train, g.val_from_train, g.test) == ("unseen", 0, 0, 1_250)
    assert p.attribution_classes()[0] == "CelebA-HQ"
    assert p.attribution_classes()[9] == "StyleGAN2" and len(p.attribution_classes()) == 11


def test_shipped_protocol_has_the_extra_test_sets_and_paper_groups():
    p = load_protocol(PROTOCOL)
    assert [g.name for g in p.select(["table7"])] == ["Celeb-DF", "DFDC", "WildDeepfake"]
    assert {g.name for g in p.select(["table8"])} == {"VAE", "HART", "FLUX"}
    assert p.groups["table2"].members == (
        "FFHQ", "SimSwap", "InSwapper", "UniFace", "e4s", "VQGAN", "SD-2.1", "DiT", "SiT", "REFace",
    )  # fmt: skip
    assert set(p.groups["table3"].members) == {
        "LivePortrait", "LIA", "FSRT", "DiffusionAct", "EDTalk", "AniTalker", "Real3DPortrait", "FLOAT",
    }  # fmt: skip
    assert set(p.groups["unseen"].members) == set(TABLE_I_UNSEEN)
    assert all(grp.auc_negatives == "FFHQ" for n, grp in p.groups.items() if n != "seen")
    # The folder names DF40 actually uses.
    aliases = {g.name: {normalize_name(a) for a in g.aliases} for g in p.generators}
    for name, folder in {
        "InSwapper": "inswap", "SD-2.1": "sd2.1", "SimSwap": "simswap", "UniFace": "uniface",
        "e4s": "e4s", "VQGAN": "vqgan", "DiT": "DiT", "SiT": "SiT",
    }.items():  # fmt: skip
        assert normalize_name(folder) in aliases[name]
    # Celeb-DF++ videos come from the official test list, as frames.
    for name in ("LivePortrait", "LIA", "FSRT", "Real3DPortrait", "AniTalker", "FLOAT", "EDTalk"):
        g = p.generator(name)
        assert (g.media, g.test_list, g.aliases) == ("videos", "List_of_testing_videos.txt", (name,))
    assert p.seed == _raw()["seed"] and len(p.sha256) == 64


def test_names_match_case_and_separator_insensitively():
    p = load_protocol(PROTOCOL)
    assert p.generator("sd2.1").name == "SD-2.1"
    assert p.generator("stylegan_2").name == "StyleGAN2"
    assert normalize_name("SD-2.1") != normalize_name("sd21")  # dots are kept
    with pytest.raises(ConfigError, match="did you mean 'StyleGAN3'"):
        p.generator("StyleGAN4")


def test_a_user_adds_a_generator_without_code(tmp_path: Path):
    text = PROTOCOL.read_text(encoding="utf-8") + (
        '\n[sources.MyLab]\ndescription = "our own generations"\n\n'
        '[[generators]]\nname = "MyGAN"\nsource = "MyLab"\nrole = "unseen"\nforgery_type = "EFS"\n'
        'architecture = "GAN"\ndfd_label = 1\ndfa_label = -1\ntest = 300\naliases = ["mygan", "."]\n'
    )
    mine = tmp_path / "my_protocol.toml"
    mine.write_text(text, encoding="utf-8")
    p = load_protocol(mine)
    g = p.generator("MyGAN")
    assert (g.source, g.wanted(), g.media) == ("MyLab", {"train": 0, "val": 0, "test": 300}, "images")
    assert g.exclude_dirs == ("landmarks", "masks", "mask")  # from [defaults]
    assert len(p.generators) == len(load_protocol(PROTOCOL).generators) + 1


def test_tiny_test_protocol_loads():
    p = load_protocol(TINY)
    assert p.attribution_classes() == ["CelebA-HQ", "StyleGAN2", "DiffFace", "SimSwap"]
    assert p.generator("SimSwap").wanted() == {"train": 8, "val": 4, "test": 8}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(seeds=1), "unknown key 'seeds' (did you mean 'seed'?)"),
        (lambda d: d["generators"][0].update(alias=["x"]), "unknown key 'alias' (did you mean 'aliases'?)"),
        (lambda d: d["sources"]["GenFace"].update(descripton="x"), "did you mean 'description'?"),
        (lambda d: d["groups"]["table2"].update(member=["FFHQ"]), "did you mean 'members'?"),
        (lambda d: d["defaults"].update(val_from_trian=3), "did you mean 'val_from_train'?"),
        (lambda d: d["generators"][1].update(source="GenFaces"), "did you mean 'GenFace'?"),
        (lambda d: d["groups"]["table2"].update(members=["FFHQ", "Simswap2"]), "did you mean 'SimSwap'?"),
    ],
)
def test_unknown_keys_and_names_suggest_the_near_miss(edit, message):
    data = _raw()
    edit(data)
    with pytest.raises(ConfigError) as err:
        parse_protocol(data, "protocol.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("protocol.toml")


def _gen(data: dict, name: str) -> dict:
    return next(g for g in data["generators"] if g["name"] == name)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: _gen(d, "StyleGAN3").update(dfa_label=9), "label 9 is used twice"),
        (lambda d: _gen(d, "StyleGAN3").update(dfa_label=12), "seen dfa_labels must be 0..10"),
        (lambda d: _gen(d, "FLUX").update(dfa_label=3), "an unseen set has dfa_label = -1"),
        (lambda d: _gen(d, "FLUX").update(train=100), "an unseen set is test-only"),
        (lambda d: _gen(d, "FFHQ").update(forgery_type="EFS"), "a real set has dfd_label = 0"),
        (
            lambda d: _gen(d, "StyleGAN2").update(architecture="Other"),
            "needs architecture GAN, Diffusion or Flow",
        ),
        (lambda d: _gen(d, "StyleGAN2").update(dfd_label=2), "dfd_label must be 0 (real) or 1 (fake)"),
        (lambda d: _gen(d, "LIA").pop("frames_per_video"), "needs frames_per_video"),
        (lambda d: _gen(d, "StyleGAN2").update(val_from_train=10_000), "must be smaller than train"),
        (lambda d: _gen(d, "StyleGAN2").update(train="10000"), "train must be an integer"),
        (lambda d: _gen(d, "StyleGAN2").update(aliases=[]), "aliases must list at least one folder"),
        (
            lambda d: _gen(d, "StyleGAN3").update(aliases=["StyleGAN2"]),
            "claimed by both 'StyleGAN2' and 'StyleGAN3'",
        ),
        (lambda d: _gen(d, "LIA").update(test_list="/abs/list.txt"), "must be relative to the source root"),
        (lambda d: _gen(d, "LIA").update(media="movies"), "media must be one of images, frames, videos"),
        (lambda d: _gen(d, "FLUX").update(label_file="labels.csv"), "they need media"),
        (lambda d: d["generators"].append(dict(_gen(d, "LIA"), name="lia")), "listed twice"),
        (lambda d: d["groups"]["table2"].update(auc_negatives="FLUX"), "must be a real set"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d.pop("seed"), "missing required key 'seed'"),
    ],
)
def test_rule_violations_are_config_errors(edit, message):
    data = _raw()
    edit(data)
    with pytest.raises(ConfigError, match=None) as err:
        parse_protocol(data, "protocol.toml")
    assert message in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="protocol file not found"):
        load_protocol(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_protocol(bad)
