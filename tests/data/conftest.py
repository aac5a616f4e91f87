"""Synthetic dataset trees in the layouts the real datasets are released in, for the benchmark tests.

``dataset_tree`` builds, under one folder, a small copy of each layout the tiny protocol
(``tests/data/tiny_protocol.toml``) names, with the faults users meet: an empty folder, a
0-byte image, a truncated PNG, a text file named ``.png``, a stray text file, a folder name
in the wrong case, a mask folder that must not be read, and real and fake videos side by
side with a label file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

TINY_PROTOCOL = Path(__file__).with_name("tiny_protocol.toml")


def image_bytes(seed: int, fmt: str = "PNG", size: int = 8) -> bytes:
    """A small valid image whose pixels depend on ``seed`` (so no two files are identical)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, fmt))
    return path


def write_video(path: Path, n_frames: int, seed: int = 0) -> Path:
    """A real MPEG-4 video of ``n_frames`` 16x16 frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (16, 16))
    assert writer.isOpened()
    for i in range(n_frames):
        writer.write(np.full((16, 16, 3), (seed * 37 + i * 11) % 256, np.uint8))
    writer.release()
    return path


@dataclass
class DatasetTree:
    """Where each source of the tiny protocol lives, and the faulty files planted in it."""

    base: Path
    roots: dict[str, str]  # source name -> folder, as --root would give
    bad_files: dict[str, Path]  # fault name -> file

    def root_args(self) -> list[str]:
        return [f"{name}={folder}" for name, folder in self.roots.items()]


def build_tree(base: Path) -> DatasetTree:
    """Write the synthetic datasets under ``base`` (about 200 small files)."""
    seed = iter(range(1, 100_000))
    bad: dict[str, Path] = {}

    # GenFace: one folder per generator, below a forgery-type folder; one name in the wrong case.
    genface = base / "GenFace"
    for i in range(12):
        write_image(genface / "EFS" / "StyleGAN2" / f"{i:05d}.png", next(seed))
    for i in range(14):
        write_image(genface / "FS" / "diffface" / f"img_{i:03d}.png", next(seed))
    (genface / "FS" / "diffface" / "empty_dir").mkdir()
    bad["zero_byte"] = genface / "FS" / "diffface" / "zero.png"
    bad["zero_byte"].write_bytes(b"")
    good = image_bytes(next(seed))
    bad["truncated_png"] = genface / "FS" / "diffface" / "truncated.png"
    bad["truncated_png"].write_bytes(good[: len(good) // 2])
    bad["text_as_png"] = genface / "FS" / "diffface" / "not_really.png"
    bad["text_as_png"].write_text("this is not an image\n")
    bad["stray_text"] = genface / "FS" / "diffface" / "notes.txt"
    bad["stray_text"].write_text("generation log\n")

    # CelebAMask-HQ: CelebA-HQ-img/<n>.jpg; the mask folder beside it must not be read.
    celeba = base / "CelebAMask-HQ"
    for i in range(15):
        write_image(celeba / "CelebA-HQ-img" / f"{i}.jpg", next(seed), "JPEG")
    write_image(celeba / "CelebA-HQ-img" / "15.JPG", next(seed), "JPEG")  # upper-case extension
    write_image(celeba / "CelebAMask-HQ-mask-anno" / "0" / "00000_hair.png", next(seed))

    # DF40: <method>/{ff,cdf}/frames/<video>/<frame>.png, with DeepfakeBench landmarks beside
    # the frames; the EFS form <method>/ff/<video>/<frame>.png for sd2.1.
    df40 = base / "DF40"
    for v in range(8):
        for f in range(4):
            write_image(
                df40 / "test" / "simswap" / "ff" / "frames" / f"{v:03d}_{v + 100:03d}" / f"{f:03d}.png",
                next(seed),
            )
    for v in range(3):
        for f in range(4):
            write_image(
                df40 / "test" / "simswap" / "cdf" / "frames" / f"id{v}_id{v + 1}_0000" / f"{f:03d}.png",
                next(seed),
            )
    (df40 / "test" / "simswap" / "ff" / "landmarks" / "000_100").mkdir(parents=True)
    (df40 / "test" / "simswap" / "ff" / "landmarks" / "000_100" / "000.npy").write_bytes(b"\x93NUMPY")
    for v in range(3):
        for f in range(4):
            write_image(
                df40 / "test" / "inswap" / "cdf" / "frames" / f"id{v}_id9_0001" / f"{f:03d}.png", next(seed)
            )
    for v in range(2):
        for f in range(3):
            write_image(df40 / "sd2.1" / "ff" / f"{v:03d}" / f"{f}.png", next(seed))

    # Celeb-DF++: Celeb-synthesis/<scenario>/<Method>/<video>.mp4 and the test list; another
    # method reuses a video name to check that the list is matched per method.
    cdfpp = base / "Celeb-DF++"
    live = cdfpp / "Celeb-synthesis" / "FaceReenact" / "LivePortrait"
    for v in range(6):
        write_video(live / f"id{v}_id{v + 1}_0000.mp4", 8, seed=v)
    write_video(cdfpp / "Celeb-synthesis" / "FaceReenact" / "LIA" / "id5_id6_0000.mp4", 8)
    bad["zero_video"] = live / "id9_id9_0009.mp4"
    bad["zero_video"].write_bytes(b"")
    (cdfpp / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0000.mp4\n"
        "0 Celeb-synthesis/FaceReenact/LivePortrait/id0_id1_0000.mp4\n"
        "0 Celeb-synthesis/FaceReenact/LivePortrait/id1_id2_0000.mp4\n"
        "0 Celeb-synthesis/FaceReenact/LivePortrait/id2_id3_0000.mp4\n"
        "0 Celeb-synthesis/FaceReenact/LivePortrait/id9_id9_0009.mp4\n"
        "0 Celeb-synthesis/FaceReenact/LIA/id5_id6_0000.mp4\n"
    )

    # DFDC public test set: real and fake videos in one folder, told apart by labels.csv.
    dfdc = base / "DFDC" / "test"
    labels = ["filename,label"]
    for v in range(5):
        write_video(dfdc / "videos" / f"fake{v:02d}.mp4", 6, seed=20 + v)
        labels.append(f"fake{v:02d}.mp4,1")
    for v in range(3):
        write_video(dfdc / "videos" / f"real{v:02d}.mp4", 6, seed=40 + v)
        labels.append(f"real{v:02d}.mp4,0")
    write_video(dfdc / "videos" / "nolabel.mp4", 6, seed=60)
    (dfdc / "labels.csv").write_text("\n".join(labels) + "\n")

    # FFHQ: images1024x1024/<bucket>/<id>.png and its licence file.
    ffhq = base / "ffhq-dataset"
    for i in range(8):
        write_image(ffhq / "images1024x1024" / f"{(i // 4) * 1000:05d}" / f"{i:05d}.png", next(seed))
    (ffhq / "images1024x1024" / "LICENSE.txt").write_text("CC BY-NC-SA 4.0\n")

    roots = {
        "GenFace": str(genface),
        "CelebA-HQ": str(celeba),
        "DF40": str(df40),
        "Celeb-DF++": str(cdfpp),
        "DFDC": str(base / "DFDC"),
        "FFHQ": str(ffhq),
    }
    return DatasetTree(base=base, roots=roots, bad_files=bad)


@pytest.fixture(scope="module")
def dataset_tree(tmp_path_factory: pytest.TempPathFactory) -> DatasetTree:
    """The synthetic datasets, built once per test module (tests must not modify them)."""
    return build_tree(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def tiny_protocol():
    from gazeclip_cli.core.data.protocol import load_protocol

    return load_protocol(TINY_PROTOCOL)


def relative_to(path: str, base: Path) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")
