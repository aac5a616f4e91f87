"""Discovery on synthetic trees in the datasets' released layouts, and the cheap file checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gazeclip_cli.core.data.benchmark import check_image_file, sniff_image, sniff_video
from gazeclip_cli.core.data.discovery import discover, frame_number, parse_roots
from gazeclip_cli.core.data.frame_sampling import evenly_spaced
from gazeclip_cli.core.errors import InputError


@pytest.fixture(scope="module")
def found(dataset_tree, tiny_protocol):
    return {f.generator.name: f for f in discover(tiny_protocol, dataset_tree.roots)[0]}


def _problems(f, category):
    return sorted(os.path.basename(p.path) for p in f.problems if p.category == category)


def test_generator_folders_and_wrong_case_names(found, dataset_tree):
    base = dataset_tree.base
    assert found["StyleGAN2"].folders == [str(base / "GenFace" / "EFS" / "StyleGAN2")]
    # The protocol says DiffFace; the folder on disk is "diffface".
    assert found["DiffFace"].folders == [str(base / "GenFace" / "FS" / "diffface")]
    assert found["CelebA-HQ"].folders == [str(base / "CelebAMask-HQ" / "CelebA-HQ-img")]
    assert found["SD-2.1"].folders == [str(base / "DF40" / "sd2.1")]
    assert found["FFHQ"].folders == [str(base / "ffhq-dataset" / "images1024x1024")]


def test_still_image_layouts(found):
    assert (found["StyleGAN2"].kind, found["StyleGAN2"].n_files) == ("images", 12)
    # CelebAMask-HQ's mask folder beside CelebA-HQ-img is never read.
    assert found["CelebA-HQ"].n_files == 16
    assert any(p.endswith("15.JPG") for p in found["CelebA-HQ"].images)
    assert all("mask" not in p for p in found["CelebA-HQ"].images)
    assert found["FFHQ"].n_files == 8
    assert _problems(found["FFHQ"], "unsupported_file") == ["LICENSE.txt"]
    # The still images come in sorted tree order, so discovery is independent of the file system.
    assert found["StyleGAN2"].images == sorted(found["StyleGAN2"].images)


def test_faults_are_named_not_skipped(found):
    diff = found["DiffFace"]
    # Bad files are found (they have image names); the sampler's checks reject them later.
    assert diff.n_files == 17
    assert _problems(diff, "unsupported_file") == ["notes.txt"]
    assert _problems(diff, "empty_folder") == ["empty_dir"]


def test_df40_frames_are_grouped_by_video(found):
    sim = found["SimSwap"]
    assert sim.kind == "frames"
    assert len(sim.groups) == 11 and sim.n_files == 44
    ids = [g.video_id for g in sim.groups]
    assert "ff/frames/000_100" in ids and "cdf/frames/id0_id1_0000" in ids
    assert all(len(g.paths) == 4 for g in sim.groups)
    # DeepfakeBench's landmarks folder beside frames/ is excluded by the protocol.
    assert sim.excluded_dirs == 1 and not any(g.video_id.startswith("ff/landmarks") for g in sim.groups)
    # The EFS layout (no frames/ folder) groups the same way.
    assert [g.video_id for g in found["SD-2.1"].groups] == ["ff/000", "ff/001"]


def test_celeb_df_pp_videos_and_test_list(found, dataset_tree):
    live = found["LivePortrait"]
    assert live.kind == "videos" and len(live.groups) == 7
    assert live.test_list == str(dataset_tree.base / "Celeb-DF++" / "List_of_testing_videos.txt")
    listed = sorted(g.video_id for g in live.groups if g.in_test_list)
    # id5_id6_0000 is listed for LIA only, so LivePortrait's video of that name is not a test video.
    assert listed == ["id0_id1_0000", "id1_id2_0000", "id2_id3_0000", "id9_id9_0009"]


def test_dfdc_label_file_keeps_only_fakes(found):
    dfdc = found["DFDC"]
    assert sorted(g.video_id for g in dfdc.groups) == [f"videos/fake{i:02d}" for i in range(5)]
    assert dfdc.excluded_by_label == 3
    assert _problems(dfdc, "unlabelled") == ["nolabel.mp4"]
    assert dfdc.label_files[0].endswith("labels.csv")


def test_missing_root_and_missing_folder(tiny_protocol, dataset_tree):
    roots = dict(dataset_tree.roots)
    roots.pop("FFHQ")
    roots["GenFace"] = str(dataset_tree.base / "DF40")  # the wrong dataset: no StyleGAN2 folder there
    out = {
        f.generator.name: f for f in discover(tiny_protocol, roots, tiny_protocol.select(["seen", "FFHQ"]))[0]
    }
    assert [p.category for p in out["FFHQ"].problems] == ["no_root"]
    assert "--root FFHQ=DIR" in out["FFHQ"].problems[0].detail
    assert [p.category for p in out["StyleGAN2"].problems] == ["not_found"]
    assert "'StyleGAN2'" in out["StyleGAN2"].problems[0].detail


def test_root_alias_dot_uses_the_root_itself(tiny_protocol, dataset_tree):
    roots = {"FFHQ": str(dataset_tree.base / "ffhq-dataset" / "images1024x1024" / "00000")}
    (f,), _ = discover(tiny_protocol, roots, [tiny_protocol.generator("FFHQ")])
    assert f.folders == [roots["FFHQ"]] and f.n_files == 4


@pytest.mark.parametrize(
    ("generator", "root_name", "image_folder", "beside"),
    [
        # FFHQ's release: images1024x1024/ beside thumbnails128x128/ (and the in-the-wild set).
        ("FFHQ", "FFHQ", "images1024x1024", ["thumbnails128x128/00000", "in-the-wild-images/00000"]),
        # CelebAMask-HQ: CelebA-HQ-img/ beside the mask annotations (PNG masks in numbered folders).
        ("CelebA-HQ", "CelebA-HQ", "CelebA-HQ-img", ["CelebAMask-HQ-mask-anno/0", "CelebAMask-HQ-mask"]),
    ],
)
def test_root_named_after_an_alias_reads_only_the_image_folder(
    tmp_path, generator, root_name, image_folder, beside
):
    from gazeclip_cli.core.data.protocol import load_protocol

    def write_image(path: Path, seed: int) -> Path:  # discovery never opens a file: a header will do
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([seed % 256]))
        return path

    protocol = load_protocol(Path(__file__).resolve().parents[2] / "configs" / "protocol.toml")
    spec = protocol.generator(generator)
    assert root_name in spec.aliases  # the case this test is about: the root's own name is an alias
    root = tmp_path / root_name
    images = [write_image(root / image_folder / "00000" / f"{i:05d}.png", i) for i in range(3)]
    for j, folder in enumerate(beside):
        for i in range(4):
            write_image(root / folder / f"{i:05d}.png", 100 + 10 * j + i)
    (f,), _ = discover(protocol, {spec.source: str(root)}, [spec])
    assert f.folders == [str(root / image_folder)]
    assert sorted(f.images) == sorted(str(p) for p in images)
    # Without the documented subfolder the root itself is still read (a root holding the images).
    flat = tmp_path / "flat" / root_name
    only = [write_image(flat / f"{i}.png", 200 + i) for i in range(2)]
    (g,), _ = discover(protocol, {spec.source: str(flat)}, [spec])
    assert g.folders == [str(flat)] and sorted(g.images) == sorted(str(p) for p in only)


def test_videos_entry_reads_extracted_frames(tmp_path, tiny_protocol):
    # DeepfakeBench-preprocessed Celeb-DF++: <Method>/frames/<video>/<frame>.png, no videos.
    root = tmp_path / "cdfpp"
    for v in range(2):
        d = root / "Celeb-synthesis" / "FaceReenact" / "LivePortrait" / "frames" / f"id{v}_id1_0000"
        d.mkdir(parents=True)
        for i in range(3):
            (d / f"{i:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "List_of_testing_videos.txt").write_text(
        "0 Celeb-synthesis/FaceReenact/LivePortrait/id1_id1_0000.mp4\n"
    )
    (f,), _ = discover(tiny_protocol, {"Celeb-DF++": str(root)}, [tiny_protocol.generator("LivePortrait")])
    assert f.kind == "frames" and f.n_files == 6
    assert {g.video_id: g.in_test_list for g in f.groups} == {
        "frames/id0_id1_0000": False,
        "frames/id1_id1_0000": True,
    }


def test_deepfakebench_json(tmp_path, tiny_protocol, dataset_tree):
    frames = sorted(
        (dataset_tree.base / "DF40" / "test" / "inswap" / "cdf" / "frames" / "id0_id9_0001").iterdir()
    )
    data = {
        "DF40_inswap_cdf": {
            "inswap": {
                "test": {
                    "id0_id9_0001": {
                        "label": "inswap",
                        "frames": [os.path.relpath(p, tmp_path) for p in frames],
                    }
                }
            },
            "CDF_real": {"test": {"id0_0000": {"label": "CDF_real", "frames": ["a.png"]}}},
        }
    }
    js = tmp_path / "inswap_cdf.json"
    js.write_text(json.dumps(data))
    # No DF40 root: the JSON alone provides InSwapper; relative paths are relative to the JSON's folder.
    (f,), general = discover(
        tiny_protocol, {}, [tiny_protocol.generator("InSwapper")], deepfakebench_json=[js]
    )
    assert [g.video_id for g in f.groups] == ["id0_id9_0001"]
    assert f.groups[0].paths == [str(p) for p in frames]
    assert f.json_files == [str(js)]
    unmatched = [p for p in general if p.category == "json_unmatched"]
    assert [p.path for p in unmatched] == ["DF40_inswap_cdf/CDF_real/test"]


def test_parse_roots(tiny_protocol, dataset_tree):
    roots = parse_roots(
        [f"genface={dataset_tree.roots['GenFace']}", f"celeb-df++={dataset_tree.roots['Celeb-DF++']}"],
        tiny_protocol,
    )
    assert roots == {"GenFace": dataset_tree.roots["GenFace"], "Celeb-DF++": dataset_tree.roots["Celeb-DF++"]}
    with pytest.raises(InputError, match="did you mean 'GenFace'"):
        parse_roots([f"GenFaces={dataset_tree.base}"], tiny_protocol)
    with pytest.raises(InputError, match="expected NAME=DIR"):
        parse_roots([str(dataset_tree.base)], tiny_protocol)
    with pytest.raises(InputError, match="does not exist"):
        parse_roots([f"GenFace={dataset_tree.base / 'nope'}"], tiny_protocol)
    with pytest.raises(InputError, match="given twice"):
        parse_roots([f"GenFace={dataset_tree.base}", f"GENFACE={dataset_tree.base}"], tiny_protocol)


def test_cheap_file_checks(dataset_tree, tmp_path):
    bad = dataset_tree.bad_files
    good = next((dataset_tree.base / "GenFace" / "EFS" / "StyleGAN2").iterdir())
    assert check_image_file(str(good)) is None
    assert check_image_file(str(bad["zero_byte"])) == ("empty_file", "0 bytes")
    # A file cut short after a valid header passes the cheap check; --verify-decode catches it.
    assert check_image_file(str(bad["truncated_png"])) is None
    assert check_image_file(str(bad["text_as_png"]))[1].startswith("not an image")
    assert check_image_file(str(tmp_path / "missing.png"))[0] == "unreadable"
    jpg = next((dataset_tree.base / "CelebAMask-HQ" / "CelebA-HQ-img").iterdir())
    assert check_image_file(str(jpg)) is None
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_video(b"\x00\x00\x00\x1cftypisom") == "mp4"
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff_video(b"hello world, no video") is None


def test_evenly_spaced_and_frame_numbers():
    assert evenly_spaced(10, 3) == [1, 5, 8]
    assert evenly_spaced(4, 4) == [0, 1, 2, 3]
    assert evenly_spaced(3, 5) == [0, 1, 2]
    assert evenly_spaced(100, 10) == list(range(5, 100, 10))
    assert evenly_spaced(5, 0) == []
    assert (frame_number("/a/b/000123.png"), frame_number("frame_7.jpg"), frame_number("x.png")) == (
        123,
        7,
        None,
    )


def test_symlink_loops_and_folders_named_like_images(tmp_path, tiny_protocol):
    gen = tmp_path / "GenFace" / "StyleGAN2"
    (gen / "sub").mkdir(parents=True)
    (gen / "sub" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (gen / "sub" / "up").symlink_to(gen)  # a loop back to the generator folder
    (gen / "twin").symlink_to(gen / "sub")  # the same folder reached twice
    (gen / "odd.png").mkdir()  # a folder with an image's name
    spec = tiny_protocol.generator("StyleGAN2")
    (f,), _ = discover(tiny_protocol, {"GenFace": str(tmp_path / "GenFace")}, [spec])
    skipped = {os.path.basename(p.path): p.detail for p in f.problems if p.category == "symlink_skipped"}
    assert set(skipped) == {"up", "twin"}
    assert "loop" in skipped["up"] and "listed once" in skipped["twin"]
    assert sorted(os.path.basename(p) for p in f.images) == ["a.png", "odd.png"]
    assert check_image_file(str(gen / "odd.png")) == (
        "unreadable",
        "a folder named like an image file; its contents are not read",
    )


def test_df40_fake_real_layout_reads_only_fakes(tmp_path):
    from gazeclip_cli.core.data.protocol import load_protocol

    protocol = load_protocol(Path(__file__).resolve().parents[2] / "configs" / "protocol.toml")
    root = tmp_path / "DF40"
    for side in ("fake", "real"):
        for v in range(2):
            d = root / "UniFace" / side / "frames" / f"{side}{v}"
            d.mkdir(parents=True)
            (d / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (f,), _ = discover(protocol, {"DF40": str(root)}, [protocol.generator("UniFace")])
    assert [g.video_id for g in f.groups] == ["fake/frames/fake0", "fake/frames/fake1"]
    assert f.excluded_dirs == 1
