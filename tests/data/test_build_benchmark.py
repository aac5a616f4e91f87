"""build-benchmark end to end on synthetic trees: exact counts and labels, determinism, splits, strictness, CLI."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.data.benchmark import build_benchmark, write_benchmark
from gazeclip_cli.core.data.frame_sampling import evenly_spaced
from gazeclip_cli.core.data.manifest import MANIFEST_COLUMNS, read_manifest, read_summary
from gazeclip_cli.core.data.protocol import parse_protocol
from gazeclip_cli.core.errors import DataError

TINY = Path(__file__).with_name("tiny_protocol.toml")


@pytest.fixture(scope="module")
def built(dataset_tree, tiny_protocol, tmp_path_factory):
    """The tiny protocol built once (every file checked and decoded) and written outside the data tree."""
    result = build_benchmark(tiny_protocol, dataset_tree.roots, check_all=True, verify_decode=True)
    out = tmp_path_factory.mktemp("out") / "manifest.csv"
    write_benchmark(result, out)
    return result, out


def test_manifest_counts_and_labels_are_exact(built, tiny_protocol):
    result, out = built
    manifest = read_manifest(out)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in manifest.rows:
        counts[row.generator, row.split] += 1
        spec = tiny_protocol.generator(row.generator)
        assert (
            row.dfd_label,
            row.dfa_label,
            row.forgery_type,
            row.architecture,
            row.source,
            row.prompt_name,
        ) == (
            spec.dfd_label,
            spec.dfa_label,
            spec.forgery_type,
            spec.architecture,
            spec.source,
            spec.prompt_name,
        )
    expected = {
        (g.name, split): n for g in tiny_protocol.generators for split, n in g.wanted().items() if n > 0
    }
    assert dict(counts) == expected
    assert not result.has_shortfall
    assert manifest.attribution_classes() == tiny_protocol.attribution_classes()
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(MANIFEST_COLUMNS)


def test_bad_files_are_reported_by_name_and_never_selected(built, dataset_tree):
    result, out = built
    paths = {str(read_manifest(out).resolve(r)) for r in read_manifest(out).rows}
    for name in ("zero_byte", "truncated_png", "text_as_png", "zero_video", "stray_text"):
        assert str(dataset_tree.bad_files[name]) not in paths
    by_path = {p.path: p.category for p in result.problems}
    assert by_path[str(dataset_tree.bad_files["zero_byte"])] == "empty_file"
    assert by_path[str(dataset_tree.bad_files["truncated_png"])] == "unreadable"
    assert by_path[str(dataset_tree.bad_files["text_as_png"])] == "unreadable"
    assert by_path[str(dataset_tree.bad_files["zero_video"])] == "empty_file"
    assert by_path[str(dataset_tree.bad_files["stray_text"])] == "unsupported_file"
    diff = next(r for r in result.reports if r.name == "DiffFace")
    # 17 image-named files, 3 of them broken; with check_all every one was checked (and decoded).
    assert (diff.found_files, diff.checked, diff.unusable, diff.usable) == (17, 17, 3, 14)
    summary = read_summary(out)
    gen = next(g for g in summary["generators"] if g["name"] == "DiffFace")
    assert (gen["found"]["files"], gen["usable"], gen["selected"]) == (
        17,
        14,
        {"train": 6, "val": 2, "test": 3},
    )
    assert gen["problems"] == {"unsupported_file": 1, "empty_folder": 1, "unreadable": 2, "empty_file": 1}
    assert summary["manifest"]["rows"] == len(result.rows)


def test_same_inputs_and_seed_give_a_byte_identical_manifest(dataset_tree, tiny_protocol, tmp_path):
    a = write_benchmark(build_benchmark(tiny_protocol, dataset_tree.roots), tmp_path / "a.csv")[0]
    b = write_benchmark(build_benchmark(tiny_protocol, dataset_tree.roots), tmp_path / "b.csv")[0]
    assert a.read_bytes() == b.read_bytes()
    c = write_benchmark(build_benchmark(tiny_protocol, dataset_tree.roots, seed=8), tmp_path / "c.csv")[0]
    assert c.read_bytes() != a.read_bytes()
    # The summary is deterministic too (no timestamps).
    assert read_summary(a)["manifest"]["sha256"] == read_summary(b)["manifest"]["sha256"]


@pytest.mark.parametrize("seed", range(6))
def test_no_video_falls_on_two_sides_of_a_split(dataset_tree, tiny_protocol, seed):
    result = build_benchmark(tiny_protocol, dataset_tree.roots, seed=seed)
    splits: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in result.rows:
        if row.video_id:
            splits[row.generator, row.video_id].add(row.split)
    assert splits and all(len(s) == 1 for s in splits.values())
    sim = [r for r in result.rows if r.generator == "SimSwap"]
    # 4 frames per video: test 8 = 2 videos, val 4 = 1 video, train 8 = 2 videos.
    assert len({r.video_id for r in sim}) == 5


def test_frame_and_video_rows(built, tiny_protocol):
    result, _ = built
    live = [r for r in result.rows if r.generator == "LivePortrait"]
    # Only videos on Celeb-DF++'s test list; 3 evenly spaced frames of each 8-frame video.
    assert {r.video_id for r in live} <= {"id0_id1_0000", "id1_id2_0000", "id2_id3_0000"}
    assert all(r.path.endswith(".mp4") for r in live)
    by_video = defaultdict(list)
    for r in live:
        by_video[r.video_id].append(r.frame_index)
    assert len(by_video) == 2 and all(sorted(v) == evenly_spaced(8, 3) for v in by_video.values())
    dfdc = [r for r in result.rows if r.generator == "DFDC"]
    assert all("fake" in r.video_id for r in dfdc) and {r.frame_index for r in dfdc} == set(
        evenly_spaced(6, 2)
    )
    sim = [r for r in result.rows if r.generator == "SimSwap"]
    assert all(r.frame_index == int(Path(r.path).stem) for r in sim)
    still = [r for r in result.rows if r.generator in ("StyleGAN2", "FFHQ", "CelebA-HQ")]
    assert all(r.video_id == "" and r.frame_index is None for r in still)


def test_paths_relative_inside_the_manifest_folder_absolute_outside(dataset_tree, tiny_protocol, built):
    result, outside = built
    inside = dataset_tree.base / "manifest_inside.csv"
    try:
        write_benchmark(result, inside)
        rows_in = read_manifest(inside).rows
        assert all(not os.path.isabs(r.path) and "\\" not in r.path for r in rows_in)
        assert rows_in[0].path.startswith("CelebAMask-HQ/CelebA-HQ-img/")
    finally:
        inside.unlink()
        inside.with_name("manifest_inside.summary.json").unlink()
    m = read_manifest(outside)
    assert all(os.path.isabs(r.path) for r in m.rows)
    assert all(m.resolve(r).is_file() for r in m.rows)


def test_strict_turns_a_shortfall_into_an_error(dataset_tree, tiny_protocol):
    data = tomllib.loads(TINY.read_text(encoding="utf-8"))
    next(g for g in data["generators"] if g["name"] == "StyleGAN2")["test"] = 30
    greedy = parse_protocol(data, "greedy.toml")
    result = build_benchmark(greedy, dataset_tree.roots)
    report = next(r for r in result.reports if r.name == "StyleGAN2")
    # Test sets are filled first: all 12 images go to test, none are left for train or val.
    assert report.selected == {"train": 0, "val": 0, "test": 12}
    assert report.short == {"train": 6, "val": 2, "test": 18}
    assert [p.category for p in result.problems if p.generator == "StyleGAN2"] == ["short"]
    with pytest.raises(DataError, match=r"StyleGAN2 \(train 0/6, val 0/2, test 12/30\)"):
        build_benchmark(greedy, dataset_tree.roots, strict=True)
    roots = {k: v for k, v in dataset_tree.roots.items() if k != "FFHQ"}
    with pytest.raises(DataError, match="FFHQ"):
        build_benchmark(tiny_protocol, roots, strict=True)


def test_adding_a_generator_does_not_change_the_others(dataset_tree, tiny_protocol):
    full = build_benchmark(tiny_protocol, dataset_tree.roots)
    fewer = build_benchmark(tiny_protocol, dataset_tree.roots, generators=["seen", "FFHQ"])
    names = {"CelebA-HQ", "StyleGAN2", "DiffFace", "SimSwap", "FFHQ"}
    assert [r for r in full.rows if r.generator in names] == fewer.rows


def _stylegan_only(tmp_path: Path, source: Path, n: int) -> dict[str, str]:
    folder = tmp_path / "GenFace" / "StyleGAN2"
    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copyfile(source, folder / f"{i:03d}.png")
    return {"GenFace": str(tmp_path / "GenFace")}


def test_dedupe_reports_identical_content_across_splits(dataset_tree, tiny_protocol, tmp_path):
    one = next((dataset_tree.base / "GenFace" / "EFS" / "StyleGAN2").iterdir())
    roots = _stylegan_only(tmp_path, one, 12)
    result = build_benchmark(tiny_protocol, roots, generators=["StyleGAN2"], dedupe=True)
    assert result.duplicates is not None and len(result.duplicates) == 1
    dup = result.duplicates[0]
    assert len(dup.paths) == 11 and dup.cross_split and set(dup.splits) == {"train", "val", "test"}
    assert [p.category for p in result.problems if p.category.startswith("duplicate")] == [
        "duplicate_across_splits"
    ]
    assert build_benchmark(tiny_protocol, roots, generators=["StyleGAN2"]).duplicates is None


def test_verify_decode_catches_what_the_header_check_cannot(dataset_tree, tiny_protocol, tmp_path):
    one = next((dataset_tree.base / "GenFace" / "EFS" / "StyleGAN2").iterdir())
    roots = _stylegan_only(tmp_path, one, 12)
    broken = Path(roots["GenFace"]) / "StyleGAN2" / "005.png"
    data = bytearray(broken.read_bytes())
    # Right signature and end marker, garbage pixels in between.
    data[40:-20] = b"\x00" * (len(data) - 60)
    broken.write_bytes(bytes(data))
    cheap = build_benchmark(tiny_protocol, roots, generators=["StyleGAN2"], check_all=True)
    assert not [p for p in cheap.problems if p.path == str(broken)]
    full = build_benchmark(tiny_protocol, roots, generators=["StyleGAN2"], check_all=True, verify_decode=True)
    (problem,) = [p for p in full.problems if p.path == str(broken)]
    assert problem.category == "unreadable" and problem.detail.startswith("cannot decode")
    assert str(broken) not in {r.path for r in full.rows}


def test_file_names_that_are_not_utf8_are_reported(dataset_tree, tiny_protocol, tmp_path):
    one = next((dataset_tree.base / "GenFace" / "EFS" / "StyleGAN2").iterdir())
    roots = _stylegan_only(tmp_path, one, 11)
    odd = os.path.join(roots["GenFace"], "StyleGAN2", os.fsdecode(b"caf\xe9.png"))
    try:
        shutil.copyfile(one, odd)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not store non-UTF-8 names")
    result = build_benchmark(tiny_protocol, roots, generators=["StyleGAN2"], check_all=True)
    assert [p.category for p in result.problems if p.path == odd] == ["bad_name"]
    write_benchmark(result, tmp_path / "m.csv")  # every written path encodes as UTF-8


def test_manifest_reader_rejects_malformed_files(built, tmp_path):
    _, out = built
    lines = out.read_text(encoding="utf-8").splitlines()
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("path,split\n" + "\n".join(lines[1:]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="manifest header must be"):
        read_manifest(bad_header)
    bad_label = tmp_path / "l.csv"
    row = lines[2].split(",")
    row[2] = "yes"
    bad_label.write_text("\n".join([lines[0], lines[1], ",".join(row)]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"l.csv line 3: dfd_label must be an integer"):
        read_manifest(bad_label)
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")


# --------------------------------------------------------------------------- CLI


def _run(args: list[str]):
    return CliRunner().invoke(app, ["build-benchmark", *args])


def test_cli_writes_manifest_and_prints_the_table_i_view(dataset_tree, tmp_path):
    out = tmp_path / "bench" / "manifest.csv"
    args = ["--protocol", str(TINY), "--out", str(out), "--check-all"]
    for r in dataset_tree.root_args():
        args += ["--root", r]
    result = _run(args)
    assert result.exit_code == 0, result.output
    for text in ("Generator", "Wanted", "Usable", "SimSwap", "LivePortrait", "empty_file", "zero.png"):
        assert text in result.output
    assert out.is_file() and out.with_name("manifest.summary.json").is_file()
    assert len(read_manifest(out).rows) == sum(g.total_wanted for g in read_manifest_protocol())


def read_manifest_protocol():
    from gazeclip_cli.core.data.protocol import load_protocol

    return load_protocol(TINY).generators


def test_cli_strict_shortfall_exits_1_and_writes_nothing(dataset_tree, tmp_path):
    out = tmp_path / "m.csv"
    args = ["--protocol", str(TINY), "--out", str(out), "--strict"]
    for name, folder in dataset_tree.roots.items():
        if name != "FFHQ":
            args += ["--root", f"{name}={folder}"]
    result = _run(args)
    assert result.exit_code == 1
    assert "--strict: 1 set(s) short of the protocol: FFHQ (test 0/5)" in result.output
    assert "no_root" in result.output
    assert not out.exists()


def test_cli_json_format_and_bad_arguments(dataset_tree, tmp_path):
    out = tmp_path / "m.csv"
    result = _run(["--protocol", str(TINY), "--out", str(out), "--only", "StyleGAN2", "--format", "json",
                   "--root", f"GenFace={dataset_tree.roots['GenFace']}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["manifest"]["rows"] == 11 and summary["generators"][0]["name"] == "StyleGAN2"
    bad = _run(["--protocol", str(TINY), "--out", str(out), "--root", f"Genface2={dataset_tree.base}"])
    assert bad.exit_code == 1 and "did you mean 'GenFace'" in bad.output
    none = _run(["--protocol", str(TINY), "--out", str(out)])
    assert none.exit_code == 1 and "no --root given" in none.output
