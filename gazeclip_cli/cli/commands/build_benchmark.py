"""``gazeclip build-benchmark``: discover the source datasets, sample the protocol, write the manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from gazeclip_cli.cli import options, output
from gazeclip_cli.core.data.benchmark import BenchmarkResult, build_benchmark, write_benchmark
from gazeclip_cli.core.data.discovery import parse_roots, printable
from gazeclip_cli.core.data.manifest import read_summary
from gazeclip_cli.core.data.protocol import load_protocol
from gazeclip_cli.core.errors import DataError, InputError


def register(app: typer.Typer) -> None:
    app.command("build-benchmark")(build_benchmark_command)


def build_benchmark_command(
    protocol: Path = typer.Option(
        ...,
        "--protocol",
        metavar="FILE",
        help="Protocol TOML file, e.g. configs/protocol.toml.",
        show_default=False,
    ),
    root: list[str] = typer.Option(
        [],
        "--root",
        metavar="NAME=DIR",
        help="Source dataset root, e.g. GenFace=/data/GenFace (repeat per source).",
        show_default=False,
    ),
    out: Path = options.out_option("FILE", "Manifest CSV to write; the summary JSON goes beside it."),
    seed: int | None = typer.Option(
        None, "--seed", metavar="N", help="Sampling seed (default: the protocol's seed)."
    ),
    only: list[str] = typer.Option(
        [],
        "--only",
        metavar="NAME",
        help="Build only this generator or protocol group (repeatable), e.g. --only seen.",
        show_default=False,
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail (and write nothing) if any set is short."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Hash the selected files and report duplicates."),
    verify_decode: bool = typer.Option(
        False, "--verify-decode", help="Fully decode every selected image (slow; default is a header check)."
    ),
    check_all: bool = typer.Option(
        False, "--check-all", help="Check every file found, not only the sampled ones (full usable counts)."
    ),
    deepfakebench_json: list[Path] = typer.Option(
        [],
        "--deepfakebench-json",
        metavar="FILE",
        help="DeepfakeBench dataset JSON file to read as well (repeatable).",
        show_default=False,
    ),
    json_base: Path | None = typer.Option(
        None,
        "--json-base",
        metavar="DIR",
        help="Folder that relative frame paths in the JSON files are relative to.",
    ),
    fmt: str = options.format_option("the summary (Table I view for table)"),
    show: int = typer.Option(
        10, "--show-problems", metavar="N", help="Paths listed per problem category (all are in the summary)."
    ),
    quiet: bool = options.quiet_option("No progress bar."),
) -> None:
    """Discover the datasets under the given roots, sample the protocol deterministically, write a manifest."""
    proto = load_protocol(protocol)
    roots = parse_roots(root, proto)
    if not roots and not deepfakebench_json:
        sources = ", ".join(proto.sources)
        raise InputError(f"no --root given; pass --root NAME=DIR for the sources you have ({sources})")

    with output.progress("discovering", "sets", quiet=quiet) as bar:

        def progress(message: str, done: int, total: int) -> None:
            bar.update(done, total, label=message, unit="files" if message.startswith("hashing") else "sets")

        result = build_benchmark(
            proto,
            roots,
            seed=seed,
            generators=only or None,
            dedupe=dedupe,
            verify_decode=verify_decode,
            check_all=check_all,
            deepfakebench_json=deepfakebench_json,
            json_base=json_base,
            progress=progress,
        )

    if fmt == "table":
        _render(result, show)
    if strict and result.has_shortfall:
        raise DataError(f"--strict: {result.shortfall_message()}; nothing written")
    manifest, summary = write_benchmark(result, out)
    if fmt == "json":
        output.print_json(read_summary(manifest))
    else:
        counts = result.split_counts()
        output.info(
            f"wrote {manifest} ({len(result.rows):,} rows: train {counts['train']:,}, "
            f"val {counts['val']:,}, test {counts['test']:,}) and {summary}"
        )


def _render(result: BenchmarkResult, show: int) -> None:
    for role, title in (("seen", "seen sets"), ("unseen", "unseen sets")):
        rows = [
            [
                r.name,
                r.dfa_label,
                r.total_wanted,
                r.found_files,
                r.usable,
                r.total_selected,
                sum(r.short.values()),
                r.unit,
            ]
            for r in result.reports
            if r.role == role
        ]
        if rows:
            output.print_table(
                f"{result.protocol.name}, {title} (seed {result.seed})",
                ["Generator", "DFA", "Wanted", "Found", "Usable", "Selected", "Short", "Unit"],
                rows,
            )
    output.prose(
        "Wanted and Selected count samples (frames for videos); Found and Usable count files or videos. "
        "Usable = found minus files that failed the checks"
        + ("" if result.options.get("check_all") else " (only the files the sampler took were checked)")
        + "."
    )
    by_category: dict[str, list] = {}
    for p in result.problems:
        by_category.setdefault(p.category, []).append(p)
    for category, problems in by_category.items():
        output.warn(f"{category}: {len(problems):,}")
        for p in problems[:show]:
            who = f"{p.generator}: " if p.generator else ""
            where = f"{printable(p.path)}: " if p.path else ""
            output.info(f"  {who}{where}{p.detail}")
        if len(problems) > show:
            output.info(f"  ... and {len(problems) - show:,} more (all listed in the summary JSON)")
