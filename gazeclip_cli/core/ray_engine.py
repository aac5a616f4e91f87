"""Ray for ``scan`` and ``preprocess`` beyond one machine: importing it, joining a cluster, sizing, the crash guard.

Ray is an optional extra (``pip install "gazeclip[ray]"``), imported only here, only when
``--engine ray`` asks for it. docs/SCALE-OUT.md describes clusters, flags and faults.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gazeclip_cli.core.cpus import usable_cores
from gazeclip_cli.core.errors import ConfigError, GazeclipError

INSTALL_HINT = 'pip install "gazeclip[ray]"'
CRASH_ENV = "GAZECLIP_TEST_CRASH"  # fault injection for tests: see CrashHook
LOOPBACK = "127.0.0.1"
WORKER_NICENESS = "RAY_worker_niceness"  # read by a Ray instance when it starts
DEVICES = ("auto", "cpu", "cuda")

T = TypeVar("T")
R = TypeVar("R")


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed; the message says how to install the extra.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine joins a cluster and sizes its workers (the flags of docs/SCALE-OUT.md)."""

    address: str | None = (
        None  # None: a Ray instance of this machine, started and stopped here; else ray.init's
    )
    actors: int | None = (
        None  # model workers; None: one per GPU (model on GPUs), else the CPUs / cpus_per_task
    )
    cpus_per_task: int = 1  # CPUs of each worker that prepares files (its torch and OpenCV threads)
    # Files a Ray task carries (rounded up to whole groups of --batch-size walk positions): fewer,
    # larger tasks spend less of the driver's and Ray's CPU on scheduling and objects.
    files_per_task: int = 64
    device: str = "auto"  # where the model workers run: auto (CUDA when the cluster has GPUs), cpu or cuda
    max_crashes: int = 2  # worker deaths on one file, tried alone, before the file is given up as an error
    # Files prepared by CPU tasks apart from the model workers; None: on GPUs. (On CPUs Ray Data
    # fuses the two stages into one worker process: the fused layout's work, split code.)
    split: bool | None = None

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"--actors {self.actors}: must be at least 1")
        if self.cpus_per_task < 1:
            raise ConfigError(f"--cpus-per-task {self.cpus_per_task}: must be at least 1")
        if self.device not in DEVICES:
            raise ConfigError(
                f"--device {self.device}: with --engine ray use auto, cpu or cuda (Ray gives each model "
                "worker its own GPU)"
            )
        if self.files_per_task < 1:
            raise ConfigError(f"--files-per-task {self.files_per_task}: must be at least 1")
        if self.max_crashes < 1:
            raise ConfigError(f"max crashes {self.max_crashes}: must be at least 1")


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a run joined."""

    address: str  # "local" for an instance of this machine started by the run, else the address joined
    cpus: int
    gpus: int
    started_here: bool


@contextlib.contextmanager
def joined(options: RayOptions) -> Iterator[Cluster]:
    """Join the cluster ``options.address`` names, or start a local instance (stopped on exit).

    A process that already called ``ray.init`` (a test, a notebook) keeps its session. A local
    instance listens on the loopback interface only, without the dashboard; usage statistics
    are off unless the environment turned them on.

    Raises:
        ConfigError: Ray is not installed, or the address cannot be joined.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers at niceness 15; a local instance's workers do this command's work,
    # so they run at the priority of the local engine's threads (0), unless the environment says.
    os.environ.setdefault(WORKER_NICENESS, "0")
    ray = import_ray()
    quiet_ray_logs()
    started = not ray.is_initialized()
    if started:
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if options.address is None:
                ray.init(num_cpus=usable_cores(), include_dashboard=False, _node_ip_address=LOOPBACK, **quiet)
            else:
                ray.init(address=options.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            where = "a local Ray instance" if options.address is None else f"--address {options.address}"
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"{where}: cannot start or join Ray ({reason}); start a cluster with `ray start --head`"
            ) from None
    try:
        resources = ray.cluster_resources()
        yield Cluster(
            address="local" if options.address is None and started else (options.address or "this session"),
            cpus=int(resources.get("CPU", 0)),
            gpus=int(resources.get("GPU", 0)),
            started_here=started,
        )
    finally:
        if started:
            ray.shutdown()


def quiet_ray_logs() -> None:
    """Keep Ray's INFO and WARNING lines (instance started, token authentication, progress bars
    off, dataset finished) out of the command's output; its errors still show."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass(frozen=True)
class WorkerPlan:
    """Where the model runs and how many workers prepare files and run it."""

    device: str  # "cpu" or "cuda"
    actors: int  # model workers (Ray actors, each loads the model once)
    cpus_per_actor: int  # CPUs reserved per model worker
    gpus_per_actor: int  # GPUs per model worker (1 on CUDA)
    split: bool  # True: CPU tasks prepare files, the model workers only run the model
    cpus_per_task: int  # CPUs of each preparing task (split), or of each model worker's preparation

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "actors": self.actors,
            "cpus_per_actor": self.cpus_per_actor,
            "gpus_per_actor": self.gpus_per_actor,
            "layout": "split" if self.split else "fused",
            "cpus_per_task": self.cpus_per_task,
        }


def plan_workers(cluster: Cluster, options: RayOptions) -> WorkerPlan:
    """Size the model workers from the options and the cluster's CPUs and GPUs.

    On GPUs each model worker holds one GPU and one CPU, and CPU tasks of ``cpus_per_task``
    prepare the files (``split``). On CPUs each worker prepares its files and runs the model
    on ``cpus_per_task`` CPUs, as every thread of the local engine does (``fused``).

    Raises:
        ConfigError: CUDA asked for on a cluster without GPUs, or more workers than it can hold.
    """
    device = options.device
    if device == "auto":
        device = "cuda" if cluster.gpus >= 1 else "cpu"
    if device == "cuda" and cluster.gpus < 1:
        raise ConfigError("--device cuda: the Ray cluster has no GPU; use --device cpu or auto")
    split = options.split if options.split is not None else device == "cuda"
    c = options.cpus_per_task
    per_actor = 1 if split else c  # a split model worker only feeds its GPU (or runs the model)
    reserve = c if split else 0  # room for at least one preparing task
    if device == "cuda":
        actors = options.actors or cluster.gpus
        if actors > cluster.gpus:
            raise ConfigError(
                f"--actors {actors}: each model worker needs a GPU and the Ray cluster has {cluster.gpus}"
            )
    else:
        actors = options.actors or max(1, (cluster.cpus - reserve) // per_actor)
    need = actors * per_actor + reserve
    if need > cluster.cpus:
        parts = f"{actors} model worker(s) x {per_actor} CPU" + (
            f" + {c} for preparing files" if split else ""
        )
        raise ConfigError(
            f"--actors {actors} with --cpus-per-task {c}: needs {need} CPUs ({parts}); the Ray cluster has "
            f"{cluster.cpus}; ask for fewer"
        )
    return WorkerPlan(device, actors, per_actor, 1 if device == "cuda" else 0, split, c)


def worker_setup(threads: int) -> None:
    """A worker process as the CLI sets itself up: the allocator tuned, ``threads`` torch and OpenCV threads."""
    import cv2
    import torch

    from gazeclip_cli.core.allocator import tune_for_tensors

    tune_for_tensors()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


# --- faults ---------------------------------------------------------------------------------------


class CrashGuard:
    """Counts, per key, the attempts that started and never finished: their worker died.

    Runs as one Ray actor (no CPU) beside the driver; workers ask it before they work.
    """

    def __init__(self) -> None:
        self._started: Counter[Hashable] = Counter()
        self._finished: Counter[Hashable] = Counter()

    def start(self, key: Hashable) -> int:
        """Record an attempt at ``key``; returns how many earlier attempts never finished."""
        died = self._started[key] - self._finished[key]
        self._started[key] += 1
        return died

    def finish(self, key: Hashable) -> None:
        self._finished[key] += 1


def start_guard() -> Any:
    """A :class:`CrashGuard` actor of the current Ray session."""
    ray = import_ray()
    return ray.remote(num_cpus=0, max_restarts=0)(CrashGuard).remote()


def run_guarded(
    guard: Any,
    key: Hashable,
    items: Sequence[T],
    run: Callable[[Sequence[T]], list[R]],
    given_up: Callable[[T, int], R],
    max_crashes: int,
) -> tuple[list[R], bool]:
    """``run(items)``, unless a worker died on this key before: then each item alone, counted.

    Ray retries a task whose worker died (and restarts a dead actor); the retry lands here
    again. On a retry each item runs on its own under its own key, so the next death is
    charged to the item that caused it; an item whose worker died ``max_crashes`` times
    gives ``given_up(item, deaths)`` instead of running again. Every retry thus gets
    further, and none repeats forever.

    Returns:
        The results in item order, and whether this was a retry.
    """
    ray = import_ray()
    if ray.get(guard.start.remote(key)) == 0:
        results = run(items)
        guard.finish.remote(key)
        return results, False
    results = []
    for index, item in enumerate(items):
        died = ray.get(guard.start.remote((key, index)))
        results.append(given_up(item, died) if died >= max_crashes else run([item])[0])
        guard.finish.remote((key, index))
    guard.finish.remote(key)
    return results, True


@dataclass(frozen=True)
class CrashHook:
    """Fault injection for tests: a worker about to work on a file of one of these names dies.

    Read from ``GAZECLIP_TEST_CRASH`` on the driver and handed to the workers:
    ``NAME`` entries (a worker dies on every attempt at that file) or ``NAME@MARKER`` (it
    dies once: the first attempt creates the file ``MARKER``), separated by ``os.pathsep``.
    """

    entries: tuple[tuple[str, str | None], ...]

    @classmethod
    def from_env(cls) -> CrashHook | None:
        text = os.environ.get(CRASH_ENV, "")
        entries = []
        for part in filter(None, text.split(os.pathsep)):
            name, _, marker = part.partition("@")
            entries.append((name, marker or None))
        return cls(tuple(entries)) if entries else None

    def check(self, path: str | os.PathLike[str]) -> None:
        """Kill this process (``os._exit``) when ``path`` is a file to die on."""
        name = os.path.basename(os.fsdecode(path))
        for target, marker in self.entries:
            if name != target:
                continue
            if marker is not None:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    continue  # died on it once already
            os._exit(70)


def reraise_cause(exc: BaseException) -> None:
    """Raise the :class:`GazeclipError` a Ray error carries (a worker's own, pickled back), if any.

    Ray wraps a task's exception in a class deriving from both ``RayTaskError`` and the
    exception's class, whose message is the whole remote traceback; the original, with its one
    line, is its ``cause``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException):
            current = cause
            continue
        if isinstance(current, GazeclipError):
            raise current from None
        current = current.__cause__
