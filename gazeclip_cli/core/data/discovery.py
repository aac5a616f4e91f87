"""Finding each protocol generator's files under the dataset roots the user gives.

A generator is found by folder name: the first three levels below its source's root are
searched for a folder whose name matches one of its aliases (case-insensitive, ignoring
``-``, ``_`` and spaces), and everything below that folder is read. That one rule covers
the layouts the datasets are released in:

- GenFace: ``<root>/.../<Generator>/...images``
- CelebAMask-HQ: ``<root>/CelebA-HQ-img/<n>.jpg``; FFHQ: ``<root>/images1024x1024/<bucket>/<n>.png``
- DF40: ``<root>/[train|test]/<method>/{ff,cdf}/frames/<video>/<frame>.png``, the EFS form
  ``<method>/{ff,cdf}/[Fake_from_Celeb-real/]<video>/<frame>.png`` and the ``<method>/fake/``
  form (``real/`` is excluded per protocol entry when wanted)
- Celeb-DF++: ``<root>/Celeb-synthesis/{FaceSwap,FaceReenact,TalkingFace}/<Method>/<video>.mp4``
  (or DeepfakeBench's ``<Method>/frames/<video>/<frame>.png``) with ``List_of_testing_videos.txt``
- Celeb-DF v2, DFDC (``labels.csv`` / ``metadata.json``), WildDeepfake (``fake_test/<clip>/<frame>.png``)
- DeepfakeBench JSON files (``{dataset: {label: {split: {[compression]: {video: {"frames": [...]}}}}}}``)

Discovery only lists folders: it never opens a file (the sampler checks the files it
takes). Every non-media file, empty folder and missing generator becomes a
:class:`Problem`; nothing is skipped silently.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gazeclip_cli.core.data.protocol import ROOT_ALIAS, GeneratorSpec, Protocol, normalize_name
from gazeclip_cli.core.errors import DataError, InputError, unknown_key_message

# What Pillow (images) and OpenCV's FFmpeg (videos) read; the same lists preprocess accepts.
IMAGE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "jfif", "bmp", "webp", "tif", "tiff", "gif", "ppm", "pgm"}
)
VIDEO_EXTENSIONS = frozenset({"mp4", "avi", "mov", "mkv", "webm", "m4v", "mpg", "mpeg", "wmv", "flv"})
# Most common first: endswith() tries them in order.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".jfif", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
# Alias folders are searched this many levels below a source root (Celeb-DF++ needs three:
# Celeb-synthesis/FaceSwap/<Method>).
ALIAS_SEARCH_DEPTH = 3

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Problem:
    """Something found wrong or missing; reported by name, never skipped silently."""

    category: str  # e.g. "not_found", "empty_folder", "unsupported_file", "empty_file", "unreadable", "short"
    generator: str  # protocol name, "" when the problem is not tied to one generator
    path: str  # the file or folder concerned ("" when none)
    detail: str  # one line saying what is wrong


@dataclass
class VideoGroup:
    """The files of one source video: its extracted frames, or the video file itself."""

    video_id: str  # folder (frames) or file (videos) path relative to the generator folder, "/"-separated
    paths: list[str]  # absolute paths; frames in name order, or one video file
    in_test_list: bool | None = None  # None when the generator has no test list


@dataclass
class Found:
    """What discovery found for one generator, before sampling."""

    generator: GeneratorSpec
    kind: str  # "images", "frames" or "videos" (a "videos" entry holding only frames reads as "frames")
    folders: list[str] = field(default_factory=list)  # matched generator folders (absolute)
    # kind "images": (folder prefix, sorted file names) per folder, in sorted tree order; a
    # path is prefix + name (paths are built only for the images the sampler takes)
    image_chunks: list[tuple[str, list[str]]] = field(default_factory=list)
    groups: list[VideoGroup] = field(default_factory=list)  # kind "frames" / "videos"
    n_files: int = 0  # media files found (images, frames or video files)
    excluded_dirs: int = 0  # sub-folders skipped because the protocol excludes them
    excluded_by_label: int = 0  # videos a label file gives the other real/fake label
    test_list: str = ""  # the test list file used
    label_files: list[str] = field(default_factory=list)  # label files used
    json_files: list[str] = field(default_factory=list)  # DeepfakeBench JSON files that contributed
    problems: list[Problem] = field(default_factory=list)

    @property
    def n_videos(self) -> int:
        return len(self.groups) if self.kind != "images" else 0

    @property
    def images(self) -> list[str]:
        """Kind "images": every image path, in sorted tree order."""
        return [prefix + name for prefix, names in self.image_chunks for name in names]


def parse_roots(items: Iterable[str], protocol: Protocol) -> dict[str, str]:
    """Turn ``NAME=DIR`` strings into ``{source name: absolute folder}``.

    Args:
        items: the ``--root`` values, e.g. ``["GenFace=/data/genface", "DF40=/data/DF40"]``.
        protocol: names the known sources (matched case-insensitively).

    Raises:
        InputError: an item without ``=``, an unknown source (suggesting the near miss),
            a source given twice, or a folder that does not exist.
    """
    roots: dict[str, str] = {}
    by_norm = {normalize_name(s): s for s in protocol.sources}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError(f"--root '{item}': expected NAME=DIR, e.g. GenFace=/data/GenFace")
        source = by_norm.get(normalize_name(name.strip()))
        if source is None:
            raise InputError(unknown_key_message(name.strip(), protocol.sources, f"--root {item}: source"))
        if source in roots:
            raise InputError(f"--root {source} is given twice")
        path = os.path.abspath(os.path.expanduser(folder.strip()))
        if not os.path.isdir(path):
            raise InputError(
                f"--root {item}: folder {path} does not exist; give the folder the dataset was extracted to"
            )
        roots[source] = path
    return roots


def discover(
    protocol: Protocol,
    roots: Mapping[str, str],
    generators: Sequence[GeneratorSpec] | None = None,
    deepfakebench_json: Sequence[str | Path] = (),
    json_base: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> tuple[list[Found], list[Problem]]:
    """Find the files of each generator under its source root (and in DeepfakeBench JSON files).

    Args:
        protocol: the validated protocol.
        roots: ``{source name: folder}`` (see :func:`parse_roots`); a source without a root
            gives a ``no_root`` problem for each of its generators (unless a JSON file covers it).
        generators: restrict to these generators (default: all of the protocol).
        deepfakebench_json: DeepfakeBench dataset JSON files; their videos join the generator
            whose alias matches one of the JSON keys above the video.
        json_base: folder that relative frame paths in the JSON files are relative to
            (default: the generator's source root when given, else the JSON file's folder).
        progress: called as ``progress(message, done, total)`` once per generator.

    Returns:
        One :class:`Found` per generator, in protocol order, and the problems not tied to
        one generator (JSON entries that match no generator).
    """
    specs = list(generators) if generators is not None else list(protocol.generators)
    from_json, json_files, json_problems = _read_deepfakebench_json(
        deepfakebench_json, specs, roots, json_base
    )

    # One folder search per source, shared by its generators.
    matches: dict[str, list[str]] = {}
    for source in dict.fromkeys(g.source for g in specs):
        if source in roots:
            matches.update(_match_aliases(roots[source], [g for g in specs if g.source == source]))

    results: list[Found] = []
    for i, spec in enumerate(specs):
        if progress is not None:
            progress(f"discovering {spec.name}", i, len(specs))
        found = _discover_one(
            spec, roots.get(spec.source), matches.get(spec.name, []), from_json.get(spec.name)
        )
        found.json_files = sorted(json_files.get(spec.name, ()))
        results.append(found)
    if progress is not None:
        progress("discovery done", len(specs), len(specs))
    return results, json_problems


# --------------------------------------------------------------------------- folder search


def _match_aliases(root: str, specs: Sequence[GeneratorSpec]) -> dict[str, list[str]]:
    """Folders under ``root`` (up to ALIAS_SEARCH_DEPTH levels) named like a generator's alias.

    A matched folder is not searched further: its whole subtree belongs to that generator.
    The folders below the root are searched first, even when the root's own name is an
    alias: a root named ``FFHQ`` holding ``images1024x1024/`` and ``thumbnails128x128/``
    reads only ``images1024x1024/``. The root itself counts for a generator whose alias is
    the root's name only when nothing below it matched that generator; the "." alias uses
    the root only when nothing else matched.
    """
    owner: dict[str, str] = {}
    for spec in specs:
        for alias in spec.aliases:
            if alias != ROOT_ALIAS:
                owner[normalize_name(alias)] = spec.name
    found: dict[str, list[str]] = {}
    level = [root]
    for _depth in range(ALIAS_SEARCH_DEPTH):
        next_level: list[str] = []
        for folder in level:
            for name in _subdirs(folder):
                path = folder + os.sep + name
                gen = owner.get(normalize_name(name))
                if gen is not None:
                    found.setdefault(gen, []).append(path)
                elif not name.startswith("."):
                    next_level.append(path)
        level = next_level
    root_owner = owner.get(normalize_name(os.path.basename(root.rstrip(os.sep))))
    if root_owner is not None and root_owner not in found:
        found[root_owner] = [root]
    for spec in specs:
        if spec.name not in found and ROOT_ALIAS in spec.aliases:
            found[spec.name] = [root]
    return found


def _subdirs(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as it:
            names = []
            for e in it:
                try:
                    if e.is_dir():
                        names.append(e.name)
                except OSError:
                    continue
    except OSError:
        return []
    names.sort()
    return names


# --------------------------------------------------------------------------- one generator


def _discover_one(
    spec: GeneratorSpec, root: str | None, folders: list[str], json_groups: list[VideoGroup] | None
) -> Found:
    kind = spec.media
    found = Found(generator=spec, kind=kind, folders=list(folders))
    if root is None and json_groups is None:
        found.problems.append(
            Problem(
                "no_root",
                spec.name,
                "",
                f"no --root given for source {spec.source}; pass --root {spec.source}=DIR",
            )
        )
        return found
    if root is not None and not folders and json_groups is None:
        names = ", ".join(f"'{a}'" for a in spec.aliases if a != ROOT_ALIAS)
        found.problems.append(
            Problem(
                "not_found",
                spec.name,
                root,
                f"no folder named {names} within {ALIAS_SEARCH_DEPTH} levels of the {spec.source} root "
                "(names match case-insensitively; add the folder name to the generator's aliases)",
            )
        )
        return found

    exclude = frozenset(normalize_name(d) for d in spec.exclude_dirs)
    label_name = normalize_name(os.path.basename(spec.label_file)) if spec.label_file else None
    # (folder, folder + sep, image names, video paths, generator folder it belongs to)
    listing: list[tuple[str, str, list[str], list[str], str]] = []
    label_paths: list[str] = []
    for top in folders:
        _walk(top, exclude, label_name, spec.name, listing, label_paths, found, spec.media == "images")

    n_images = sum(len(imgs) for _, _, imgs, _, _ in listing)
    n_videos = sum(len(vids) for _, _, _, vids, _ in listing)
    if kind == "videos" and n_videos == 0 and n_images > 0:
        # DeepfakeBench-preprocessed copies hold <video>/frames/*.png instead of the videos.
        kind = "frames"
    found.kind = kind

    # Media of the other kind (videos among images, or images beside videos) are not used.
    for _, prefix, imgs, vids, _ in listing:
        stray = vids if kind != "videos" else [prefix + n for n in imgs]
        why = (
            "a video where the protocol expects images"
            if kind != "videos"
            else "an image where videos are expected"
        )
        for path in stray:
            found.problems.append(Problem("unsupported_file", spec.name, path, why))

    if kind == "images":
        found.image_chunks = [(prefix, imgs) for _, prefix, imgs, _, _ in listing if imgs]
        if json_groups:
            # JSON paths are whole paths: one chunk with an empty prefix, minus those found on disk.
            on_disk = set(found.images)
            extra = sorted({p for g in json_groups for p in g.paths} - on_disk)
            if extra:
                found.image_chunks.append(("", extra))
        found.n_files = sum(len(names) for _, names in found.image_chunks)
    else:
        groups: dict[str, VideoGroup] = {}
        for d, prefix, names, vids, top in listing:
            rel_dir = _relative(d, top)
            if kind == "frames":
                if not names:
                    continue
                imgs = [prefix + n for n in names]
                if rel_dir == "":
                    # Files right in the generator folder belong to no video: each is its own sample.
                    for p in imgs:
                        groups.setdefault("\0" + p, VideoGroup("", [p]))
                elif rel_dir in groups:
                    groups[rel_dir].paths.extend(imgs)
                else:
                    groups[rel_dir] = VideoGroup(rel_dir, imgs)
            else:
                for p in vids:
                    vid = (rel_dir + "/" if rel_dir else "") + os.path.basename(p).rpartition(".")[0]
                    groups.setdefault(vid, VideoGroup(vid, [])).paths.append(p)
        if json_groups:
            for g in json_groups:
                target = groups.setdefault(g.video_id, VideoGroup(g.video_id, []))
                have = set(target.paths)
                target.paths.extend(p for p in g.paths if p not in have)
        found.groups = [groups[k] for k in sorted(groups)]
        found.n_files = sum(len(g.paths) for g in found.groups)

    if root is not None and found.kind != "images":
        if spec.label_file:
            _apply_label_file(found, spec, root, label_paths)
        if spec.test_list:
            _apply_test_list(found, spec, root)

    if folders and found.n_files == 0:
        found.problems.append(
            Problem(
                "no_media",
                spec.name,
                folders[0],
                f"folder found but it holds no {'video' if found.kind == 'videos' else 'image'} files",
            )
        )
    return found


def _walk(
    top: str,
    exclude: frozenset[str],
    label_name: str | None,
    generator: str,
    listing: list[tuple[str, str, list[str], list[str], str]],
    label_paths: list[str],
    found: Found,
    sort_images: bool,
) -> None:
    """List ``top`` recursively, appending ``(folder, folder + sep, image names, video paths, top)``.

    Uses ``os.listdir`` and takes a name with an image or video extension to be a file
    without asking the file system (a folder named like an image fails its check later and
    is reported); only the other names are looked up, to find the sub-folders. Image names
    are sorted per folder when ``sort_images`` (still images are sampled from that order);
    frames and videos are put in order later, per video. A folder reached through a
    symbolic link is listed once, and a link back up the tree is reported, not followed.
    """
    stack = [top]
    linked: set[str] = set()
    top_real = os.path.realpath(top)
    while stack:
        d = stack.pop()
        try:
            names = os.listdir(d)
        except OSError as exc:
            found.problems.append(Problem("unreadable", generator, d, f"cannot list folder: {exc.strerror}"))
            continue
        if not names:
            found.problems.append(Problem("empty_folder", generator, d, "folder is empty"))
            continue
        prefix = d + os.sep
        # In a dataset folder nearly every name is an image: one endswith() per name is the
        # cheapest test there is (the lower-case copy is made only for the rest).
        images = [n for n in names if n.endswith(IMAGE_SUFFIXES) or n.lower().endswith(IMAGE_SUFFIXES)]
        videos: list[str] = []
        subdirs: list[tuple[str, str]] = []
        if len(images) != len(names):
            for name in names:
                low = name.lower()
                if low.endswith(IMAGE_SUFFIXES):
                    continue
                path = prefix + name
                if low.endswith(VIDEO_SUFFIXES):
                    videos.append(path)
                elif os.path.isdir(path):
                    if name.startswith(".") or normalize_name(name) in exclude:
                        found.excluded_dirs += 1
                        continue
                    skip = _skip_link(path, d, top_real, linked) if os.path.islink(path) else None
                    if skip is not None:
                        found.problems.append(Problem("symlink_skipped", generator, path, skip))
                        continue
                    subdirs.append((name, path))
                elif label_name is not None and normalize_name(name) == label_name:
                    label_paths.append(path)
                else:
                    ext = name.rpartition(".")[2] if "." in name else ""
                    found.problems.append(
                        Problem(
                            "unsupported_file",
                            generator,
                            path,
                            f"not an image or video ({'.' + ext if ext else 'no extension'})",
                        )
                    )
        if sort_images:
            images.sort()
        listing.append((d, prefix, images, videos, top))
        if subdirs:
            subdirs.sort(reverse=True)
            stack.extend(p for _, p in subdirs)


def _skip_link(path: str, parent: str, top_real: str, linked: set[str]) -> str | None:
    """Why a folder reached through a symbolic link must not be listed, or None to list it."""
    real = os.path.realpath(path)
    here = os.path.realpath(parent)
    if here == real or here.startswith(real + os.sep):
        return "link points back up the tree (a loop); not followed"
    if real == top_real or real.startswith(top_real + os.sep):
        return "link points inside the folder being read; its files are listed once, by their own path"
    if real in linked:
        return f"another link to {real} was listed already; not listed twice"
    linked.add(real)
    return None


def _relative(path: str, top: str) -> str:
    if path == top:
        return ""
    return path[len(top) + 1 :].replace(os.sep, "/")


# --------------------------------------------------------------------------- lists and labels


def _apply_test_list(found: Found, spec: GeneratorSpec, root: str) -> None:
    """Mark each video as listed or not in the dataset's test list (Celeb-DF format)."""
    assert spec.test_list is not None
    list_path = _find_file(root, spec.test_list)
    if list_path is None:
        found.problems.append(
            Problem(
                "list_missing",
                spec.name,
                os.path.join(root, spec.test_list),
                "test list not found; test videos are drawn from all videos instead of the official test split",
            )
        )
        return
    found.test_list = list_path
    # Each line is "<label> <relative path>" (Celeb-DF) or just a path: key by video name,
    # remembering the folder it sits in, since methods reuse the same video names.
    listed: dict[str, set[str]] = {}
    try:
        with open(list_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if not parts:
                    continue
                rel = parts[-1].replace("\\", "/").strip("/")
                segments = rel.split("/")
                stem = segments[-1].rpartition(".")[0] or segments[-1]
                listed.setdefault(normalize_name(stem), set()).update(
                    normalize_name(s) for s in segments[-2:-1]
                )
    except OSError as exc:
        raise DataError(f"{list_path}: cannot read the test list ({exc.strerror})") from None
    for group in found.groups:
        stem = group.video_id.rsplit("/", 1)[-1]
        parents = listed.get(normalize_name(stem))
        if parents is None:
            group.in_test_list = False
            continue
        components = {normalize_name(c) for c in group.paths[0].split(os.sep)}
        group.in_test_list = not parents or bool(parents & components)


def _apply_label_file(found: Found, spec: GeneratorSpec, root: str, label_paths: list[str]) -> None:
    """Keep only the videos a DFDC-style label file gives this generator's real/fake label."""
    assert spec.label_file is not None
    paths = list(label_paths)
    if not paths:
        for base in [*found.folders, root]:
            candidate = _find_file(base, spec.label_file, depth=0)
            if candidate is not None:
                paths = [candidate]
                break
    if not paths:
        found.problems.append(
            Problem(
                "list_missing",
                spec.name,
                os.path.join(found.folders[0] if found.folders else root, spec.label_file),
                "label file not found; without it real and fake videos cannot be told apart, so none are used",
            )
        )
        found.groups = []
        found.n_files = 0
        return
    labels: dict[str, int] = {}
    for path in sorted(paths):
        labels.update(_read_labels(path))
    found.label_files = sorted(paths)
    kept: list[VideoGroup] = []
    for group in found.groups:
        stem = normalize_name(group.video_id.rsplit("/", 1)[-1])
        label = labels.get(stem)
        if label is None:
            found.problems.append(
                Problem(
                    "unlabelled", spec.name, group.paths[0], f"not in {os.path.basename(paths[0])}; not used"
                )
            )
        elif label == spec.dfd_label:
            kept.append(group)
        else:
            found.excluded_by_label += 1
    found.groups = kept
    found.n_files = sum(len(g.paths) for g in kept)


def _read_labels(path: str) -> dict[str, int]:
    """``{normalised video name: 0 real / 1 fake}`` from a CSV (filename,label) or a DFDC metadata.json."""

    def to_label(value: object) -> int | None:
        text = str(value).strip().casefold()
        if text in ("1", "fake"):
            return 1
        if text in ("0", "real"):
            return 0
        return None

    out: dict[str, int] = {}
    try:
        if path.lower().endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise DataError(f'{path}: expected a JSON object of {{filename: {{"label": ...}}}}')
            items = ((k, v.get("label") if isinstance(v, dict) else v) for k, v in data.items())
        else:
            with open(path, encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and not {"filename", "label"} <= set(rows[0]):
                raise DataError(
                    f"{path}: expected CSV columns 'filename' and 'label', got {', '.join(rows[0])}"
                )
            items = ((r["filename"], r["label"]) for r in rows)
        for name, value in items:
            label = to_label(value)
            if label is None:
                raise DataError(f"{path}: label {value!r} of {name} is not 0/1 or REAL/FAKE")
            base = os.path.basename(str(name).replace("\\", "/"))
            out[normalize_name(base.rpartition(".")[0] or base)] = label
    except (OSError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the label file ({exc})") from None
    return out


def _find_file(base: str, relative: str, depth: int = 2) -> str | None:
    """``base/relative``, or a file of that name up to ``depth`` levels below ``base`` (case-insensitive)."""
    direct = os.path.join(base, relative)
    if os.path.isfile(direct):
        return direct
    want = normalize_name(os.path.basename(relative))
    level = [base]
    for _ in range(depth + 1):
        next_level: list[str] = []
        for folder in level:
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if normalize_name(e.name) == want and e.is_file():
                    return e.path
                if e.is_dir() and not e.name.startswith("."):
                    next_level.append(e.path)
        level = next_level
    return None


# --------------------------------------------------------------------------- DeepfakeBench JSON


def _read_deepfakebench_json(
    files: Sequence[str | Path],
    specs: Sequence[GeneratorSpec],
    roots: Mapping[str, str],
    json_base: str | Path | None,
) -> tuple[dict[str, list[VideoGroup]], dict[str, set[str]], list[Problem]]:
    """Videos of DeepfakeBench dataset JSON files, assigned to generators by alias.

    Any object holding a ``"frames"`` list is a video; the keys above it (dataset, label,
    split, compression, method) are matched against the generators' aliases, the deepest
    match winning. Splits in the JSON are ignored: the protocol samples its own.
    """
    owner: dict[str, list[str]] = {}
    for spec in specs:
        for alias in spec.aliases:
            if alias != ROOT_ALIAS:
                owner.setdefault(normalize_name(alias), []).append(spec.name)
    out: dict[str, dict[str, VideoGroup]] = {}
    contributed: dict[str, set[str]] = {}
    unmatched: dict[str, int] = {}
    problems: list[Problem] = []
    for file in files:
        file = str(file)
        try:
            with open(file, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise InputError(f"--deepfakebench-json {file}: file not found") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"--deepfakebench-json {file}: not a readable JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"--deepfakebench-json {file}: expected a JSON object at the top level")
        base = os.path.abspath(json_base) if json_base is not None else os.path.dirname(os.path.abspath(file))
        n_videos = 0
        for keys, video in _iter_videos(data, ()):
            n_videos += 1
            gens: list[str] = []
            for key in reversed(keys[:-1]):
                gens = owner.get(normalize_name(key), [])
                if gens:
                    break
            if len(gens) != 1:
                label = "/".join(keys[:-1])
                if gens:
                    problems.append(
                        Problem(
                            "json_ambiguous", "", file, f"{label}: matches {', '.join(gens)}; videos not used"
                        )
                    )
                unmatched[label] = unmatched.get(label, 0) + 1
                continue
            name = gens[0]
            spec = next(s for s in specs if s.name == name)
            frame_base = roots.get(spec.source, base) if json_base is None and spec.source in roots else base
            paths = [
                p if os.path.isabs(p) else os.path.normpath(os.path.join(frame_base, p))
                for p in (str(f).replace("\\", "/") for f in video["frames"])
            ]
            vid = keys[-1]
            contributed.setdefault(name, set()).add(os.path.abspath(file))
            group = out.setdefault(name, {}).setdefault(vid, VideoGroup(vid, []))
            group.paths.extend(p for p in paths if p not in group.paths)
        if n_videos == 0:
            problems.append(Problem("json_empty", "", file, 'no video entries with a "frames" list'))
    for label, count in sorted(unmatched.items()):
        problems.append(
            Problem(
                "json_unmatched",
                "",
                label,
                f"{count} video(s) under keys matching no generator alias; not used",
            )
        )
    groups = {name: [vids[k] for k in sorted(vids)] for name, vids in out.items()}
    for vids in groups.values():
        for g in vids:
            g.paths.sort()
    return groups, contributed, problems


def _iter_videos(node: object, keys: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], dict]]:
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if isinstance(value, dict) and isinstance(value.get("frames"), list):
            yield (*keys, str(key)), value
        elif isinstance(value, dict):
            yield from _iter_videos(value, (*keys, str(key)))


def printable(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes of a non-UTF-8 file name become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


_TRAILING_DIGITS = re.compile(r"(\d+)$")


def frame_number(path: str) -> int | None:
    """The frame number in a frame file name (its trailing digits: ``000123.png`` -> 123)."""
    stem = os.path.basename(path).rpartition(".")[0]
    m = _TRAILING_DIGITS.search(stem)
    return int(m.group(1)) if m else None
