"""Fig. 7's fake/target pairs from file names (Celeb-DF++, DF40) and from a CSV, on trees in the datasets'
release layouts run through the real build-benchmark and preprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gazeclip_cli.core.analyze.gaze_agreement import gaze_agreement
from gazeclip_cli.core.analyze.pairs import find_pairs, pairs_from_csv, video_name
from gazeclip_cli.core.data.benchmark import build_benchmark, write_benchmark
from gazeclip_cli.core.data.cache import read_cache
from gazeclip_cli.core.data.preprocess import PreprocessSettings, preprocess
from gazeclip_cli.core.data.protocol import parse_protocol
from gazeclip_cli.core.errors import DataError
from tests.analyze.conftest import small_estimator
from tests.data.conftest import image_bytes, write_video

PROTOCOL = {
    "name": "pairs-test",
    "version": 1,
    "seed": 0,
    "sources": {s: {"description": s} for s in ("DF40", "FaceForensics++", "FF-copy", "Celeb-DF++", "Celeb-DF")},
    "generators": [
        {"name": "SimSwap", "source": "DF40", "forgery_type": "FS", "architecture": "GAN", "dfd_label": 1,
         "media": "frames", "aliases": ["simswap"]},
        {"name": "FF-real", "source": "FaceForensics++", "forgery_type": "Real", "architecture": "Real",
         "dfd_label": 0, "media": "frames", "aliases": ["original_sequences"]},
        {"name": "FF-copy", "source": "FF-copy", "forgery_type": "Real", "architecture": "Real", "dfd_label": 0,
         "media": "frames", "aliases": ["."]},
        {"name": "BlendFace", "source": "Celeb-DF++", "forgery_type": "FS", "architecture": "GAN", "dfd_label": 1,
         "media": "videos", "frames_per_video": 3, "aliases": ["BlendFace"]},
        {"name": "CDFPP-real", "source": "Celeb-DF++", "forgery_type": "Real", "architecture": "Real",
         "dfd_label": 0, "media": "videos", "frames_per_video": 3, "aliases": ["Celeb-real"]},
        {"name": "CDF-real", "source": "Celeb-DF", "forgery_type": "Real", "architecture": "Real",
         "dfd_label": 0, "media": "videos", "frames_per_video": 3, "aliases": ["Celeb-real"]},
    ],
}  # fmt: skip


def _frames(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n):
        (folder / f"{f:03d}.png").write_bytes(
            image_bytes(seed * 100 + f, size=48)
        )  # large enough for a face pose


@pytest.fixture(scope="module")
def tree_cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("pairs")
    df40 = base / "DF40" / "simswap"
    _frames(df40 / "ff" / "frames" / "000_003", 3, 1)  # target: FF++ original 000
    _frames(df40 / "ff" / "frames" / "001_870", 2, 2)  # target: FF++ original 001
    _frames(df40 / "ff" / "frames" / "002_006", 2, 3)  # target 002 exists twice: ambiguous
    _frames(df40 / "ff" / "frames" / "004_009", 2, 4)  # target 004 absent: unmatched
    _frames(df40 / "cdf" / "frames" / "id0_id1_0000", 3, 5)  # target: Celeb-DF's Celeb-real/id0_0000
    ff = base / "FaceForensics++" / "original_sequences" / "youtube" / "c23" / "frames"
    _frames(ff / "000", 3, 6)
    _frames(ff / "001", 2, 7)
    _frames(ff / "002", 2, 8)
    _frames(base / "FF-copy" / "002", 2, 9)
    cdfpp = base / "Celeb-DF++"
    write_video(cdfpp / "Celeb-synthesis" / "FaceSwap" / "BlendFace" / "id0_id1_0000.mp4", 9, seed=1)
    write_video(cdfpp / "Celeb-synthesis" / "FaceSwap" / "BlendFace" / "id2_id3_0001.mp4", 9, seed=2)
    write_video(cdfpp / "Celeb-real" / "id0_0000.mp4", 9, seed=3)
    write_video(base / "Celeb-DF" / "Celeb-real" / "id0_0000.mp4", 9, seed=4)
    protocol = {
        **PROTOCOL,
        "generators": [{**g, "role": "unseen", "dfa_label": -1, "test": 20} for g in PROTOCOL["generators"]],
    }
    roots = {"DF40": str(base / "DF40"), "FaceForensics++": str(base / "FaceForensics++"),
             "FF-copy": str(base / "FF-copy"), "Celeb-DF++": str(cdfpp), "Celeb-DF": str(base / "Celeb-DF")}  # fmt: skip
    manifest, _ = write_benchmark(
        build_benchmark(parse_protocol(protocol), roots), base / "bench" / "manifest.csv"
    )
    preprocess(
        manifest,
        base / "cache",
        PreprocessSettings(aligned=True),
        gaze_estimator=small_estimator(),
        workers=1,
    )
    return base, read_cache(base / "cache").rows


def _describe(rows, pairing):
    return sorted(
        (rows[p.fake].generator, video_name(rows[p.fake]), rows[p.fake].frame_index, rows[p.real].generator,
         video_name(rows[p.real]), rows[p.real].frame_index, p.rule)
        for p in pairing.pairs
    )  # fmt: skip


def test_name_rules_pair_each_fake_frame_with_its_targets_nearest_frame(tree_cache):
    _, rows = tree_cache
    pairing = find_pairs(rows)
    pairs = _describe(rows, pairing)
    # Celeb-DF++: idA_idB_NNNN -> Celeb-real/idA_NNNN of the same root, same frames (equal lengths).
    blend = [p for p in pairs if p[0] == "BlendFace"]
    assert blend == [
        ("BlendFace", "id0_id1_0000", f, "CDFPP-real", "id0_0000", f, "celeb-df++") for f in (1, 4, 7)
    ]
    # DF40 ff/: A_B -> FF++ original A, frame by frame.
    ff = [p for p in pairs if p[0] == "SimSwap" and p[1].startswith("00")]
    assert ff == sorted(
        [("SimSwap", "000_003", f, "FF-real", "000", f, "df40") for f in range(3)]
        + [("SimSwap", "001_870", f, "FF-real", "001", f, "df40") for f in range(2)]
    )
    # DF40 cdf/: idA_idB_NNNN -> Celeb-DF's copy of Celeb-real/idA_NNNN (sampled at frames 1, 4, 7): nearest frame.
    cdf = [p for p in pairs if p[1] == "id0_id1_0000" and p[0] == "SimSwap"]
    assert cdf == [("SimSwap", "id0_id1_0000", f, "CDF-real", "id0_0000", 1, "df40") for f in range(3)]
    offsets = {
        rows[p.fake].frame_index: p.frame_offset
        for p in pairing.pairs
        if rows[p.real].generator == "CDF-real"
    }
    assert offsets == {0: 1, 1: 0, 2: 1}
    # 002 is held by two real sets (ambiguous); 004 and Celeb-DF++'s id2_0001 by none (unmatched).
    assert pairing.ambiguous == {"SimSwap": 2}
    assert pairing.unmatched == {"SimSwap": 2, "BlendFace": 3}


def test_a_csv_pairs_what_the_names_cannot_and_counts_lines_without_rows(tree_cache, tmp_path):
    base, rows = tree_cache
    csv_path = base / "pairs.csv"
    csv_path.write_text(
        "fake,real,note\n"
        "Celeb-DF++/Celeb-synthesis/FaceSwap/BlendFace/id2_id3_0001.mp4,Celeb-DF++/Celeb-real/id0_0000.mp4,by hand\n"
        "Celeb-DF++/Celeb-synthesis/FaceSwap/BlendFace/missing.mp4,Celeb-DF++/Celeb-real/id0_0000.mp4,\n"
    )
    pairing = pairs_from_csv(csv_path, rows)
    assert _describe(rows, pairing) == [
        ("BlendFace", "id2_id3_0001", f, "CDFPP-real", "id0_0000", f, "csv") for f in (1, 4, 7)
    ]
    assert pairing.csv_missing == ["line 3: Celeb-DF++/Celeb-synthesis/FaceSwap/BlendFace/missing.mp4"]
    both = find_pairs(rows, csv_path)
    assert len(both.pairs) == 3 + 3 + 5 + 3  # CSV first, then the names for the fakes it left
    assert "BlendFace" not in both.unmatched  # the CSV paired id2_id3_0001
    (tmp_path / "bad.csv").write_text("a,b\nx,y\n")
    with pytest.raises(DataError, match="bad.csv: needs a header with the columns fake, real"):
        pairs_from_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match="pairs file not found"):
        pairs_from_csv(tmp_path / "none.csv", rows)


def test_agreement_of_the_tree_is_the_cosine_of_each_pairs_gaze_vectors(tree_cache):
    _, rows = tree_cache
    pairing = find_pairs(rows)
    angles = np.array([r.gaze for r in rows])
    result = gaze_agreement(rows, angles, pairing, gaze={}, bootstrap=0)

    def vec(p, y):  # ETH-XGaze's convention, written out
        return np.array([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)])

    for g in result.generators:
        mine = [p for p in pairing.pairs if rows[p.fake].generator == g.generator]
        expected = np.mean([vec(*rows[p.fake].gaze) @ vec(*rows[p.real].gaze) for p in mine])
        assert g.mean_cosine == pytest.approx(expected, rel=1e-9) and g.pairs == len(mine)
