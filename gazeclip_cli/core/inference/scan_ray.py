"""The Ray engine of ``scan``: the walk's files in groups through a Ray Data pipeline; the driver writes.

The driver walks once and cuts the files into walk groups of ``batch_size`` consecutive walk
positions (the local engine's batch boundaries), and a Ray task's group into whole walk groups,
``files_per_task`` files or more; Ray Data carries each task's group through preparation and the
model (each walk group's faces in its own batches) and streams its results back; the driver puts
the groups back in walk order and hands the results to
:func:`~gazeclip_cli.core.inference.scan.scan`'s writer. docs/SCALE-OUT.md has the layouts.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gazeclip_cli.core.data.cache import PreprocessSettings
from gazeclip_cli.core.data.faces import FaceDetector
from gazeclip_cli.core.data.images import display_path
from gazeclip_cli.core.errors import DataError, GazeclipError, ModelFolderError
from gazeclip_cli.core.inference.predictor import (
    InputPreparer,
    InputResult,
    Predictor,
    PredictorSettings,
    PreparedInput,
)
from gazeclip_cli.core.inference.scan import ResultSink, ScanItem, ScanTask, prepare_item
from gazeclip_cli.core.model.builder import WeightSources
from gazeclip_cli.core.ray_engine import (
    CrashHook,
    RayOptions,
    WorkerPlan,
    import_ray,
    joined,
    plan_workers,
    quiet_ray_logs,
    reraise_cause,
    run_guarded,
    start_guard,
    worker_setup,
)

# Groups queued at each model worker. Ray Data's default, 2, left two fused workers on this
# project's 2-core VM idle for a quarter of the time between groups (1.53-1.58 cores busy,
# 182-192 files/s); with 6, 1.69-1.72 cores and 221-240 files/s (demo-small, aligned). A queued
# group is a file list in the fused layout, one group's prepared faces in the split one.
GROUPS_QUEUED_PER_WORKER = 6
# A short scan's tasks are made smaller than --files-per-task so that each model worker gets
# at least this many (never smaller than one walk group).
MIN_TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class _ModelSpec:
    """How a model worker builds the driver's predictor again."""

    model_dir: str  # absolute: every node sees the same path
    settings: PredictorSettings  # the settings in force on the driver
    weight_files: dict[str, str]  # the frozen towers' files the driver's model was built from
    weights_sha256: str  # of the driver's weights.safetensors: every worker must load the same
    device: str
    threads: int


@dataclass(frozen=True)
class _PrepSpec:
    """How a CPU task prepares files as the driver's predictor would (split layout)."""

    settings: PredictorSettings
    preparation: PreprocessSettings
    image_size: int
    uses_gaze: bool
    threads: int


class RayScanEngine:
    """``scan``'s engine on a Ray cluster (see the module docstring and docs/SCALE-OUT.md).

    Args:
        options: the cluster's address and the workers' sizes.
    """

    name = "ray"

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()
        self._stack = contextlib.ExitStack()
        self._predictor: Predictor | None = None
        self._plan: WorkerPlan | None = None

    def start(self, predictor: Predictor) -> dict[str, Any]:
        cluster = self._stack.enter_context(joined(self.options))
        self._plan = plan_workers(cluster, self.options)
        self._predictor = predictor
        return {"name": self.name, "address": cluster.address, **self._plan.describe()}

    def stop(self) -> None:
        self._stack.close()
        self._predictor = self._plan = None

    def run(self, tasks: Iterable[ScanTask], emit: ResultSink) -> None:
        assert self._predictor is not None and self._plan is not None, "start() first"
        predictor, plan = self._predictor, self._plan
        ray = import_ray()
        from ray.data import ActorPoolStrategy, DataContext

        # The listing, once, on the driver.
        groups = task_groups(tasks, predictor.settings.batch_size, self.options.files_per_task, plan.actors)
        if not groups:
            return
        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        quiet_ray_logs()  # after importing ray.data, which sets its own levels
        guard = start_guard()
        common = {"guard": guard, "hook": CrashHook.from_env(), "max_crashes": self.options.max_crashes}
        model = _model_spec(predictor, plan)
        pool = ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=GROUPS_QUEUED_PER_WORKER)
        ds = ray.data.from_items(
            [{"group": g, "payload": pickle.dumps(items)} for g, items in groups.items()],
            override_num_blocks=len(groups),
        )
        if plan.split:
            prep = _PrepSpec(
                predictor.settings,
                predictor.preparation,
                predictor.image_size,
                predictor.uses_gaze,
                plan.cpus_per_task,
            )
            ds = ds.map_batches(
                _prepare_groups,
                fn_kwargs={"spec": prep, **common},
                batch_size=1,
                num_cpus=plan.cpus_per_task,
            )
            worker: type = _ModelWorker
        else:
            worker = _FusedWorker
        ds = ds.map_batches(
            worker,
            fn_constructor_kwargs={"spec": model, **common},
            batch_size=1,
            compute=pool,
            num_cpus=plan.cpus_per_actor,
            num_gpus=plan.gpus_per_actor,
        )
        order = sorted(groups)
        rank = {group: i for i, group in enumerate(order)}
        arrived: dict[int, list[InputResult]] = {}
        at = 0
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                group = int(row["group"])
                if group in arrived or rank.get(group, -1) < at:
                    raise RuntimeError(f"Ray returned group {group} twice")  # a bug, not a user error
                results = pickle.loads(row["payload"])
                if isinstance(results, _Failed):
                    raise results.error  # a worker's one-line error (a different model folder, ...)
                arrived[group] = results
                while at < len(order) and order[at] in arrived:  # back in walk order
                    for result in arrived.pop(order[at]):
                        emit(result)
                    at += 1
        except ray.exceptions.RayError as exc:
            reraise_cause(exc)
            raise
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # stopped early (Ctrl-C, an error): Ray Data stops its workers
            ray.kill(guard)
        if at < len(order):
            raise DataError(f"the Ray cluster returned {at} of {len(order)} groups of files; resume the scan")


def task_groups(
    tasks: Iterable[ScanTask], batch: int, files_per_task: int, workers: int = 1
) -> dict[int, list[list[ScanItem]]]:
    """The Ray tasks' groups: whole walk groups (``batch`` consecutive walk positions, the local
    engine's batch boundaries), in walk order, each walk group's files a list of its own,
    batched on its own by the model worker.

    A task takes ``ceil(files_per_task / batch)`` walk groups, fewer when the scan is too short
    to give each of the ``workers`` :data:`MIN_TASKS_PER_WORKER` tasks (the last tasks then
    spread over the workers rather than one worker finishing alone); at least one.
    """
    by_walk: dict[int, list[ScanItem]] = {}
    for task in tasks:
        by_walk.setdefault(task.position // batch, []).append(task.item)
    most = max(1, len(by_walk) // (workers * MIN_TASKS_PER_WORKER))
    walks_per_task = min(-(-files_per_task // batch), most)
    groups: dict[int, list[list[ScanItem]]] = {}
    for walk in sorted(by_walk):
        groups.setdefault(walk // walks_per_task, []).append(by_walk[walk])
    return groups


def _model_spec(predictor: Predictor, plan: WorkerPlan) -> _ModelSpec:
    files = predictor.folder.model.pretrained_files
    return _ModelSpec(
        model_dir=os.path.abspath(predictor.folder.path),
        # CPU workers run the runtime the driver resolved (its export checked there); GPU workers
        # resolve what was asked on their own device (auto: torch).
        settings=predictor.settings
        if plan.device == "cpu"
        else replace(predictor.settings, runtime=predictor.runtime_asked),
        weight_files={name: os.path.abspath(path) for name, path in files.items()},
        weights_sha256=predictor.model_provenance.weights_sha256,
        device=plan.device,
        threads=plan.cpus_per_actor if not plan.split else 1,
    )


def _load_predictor(spec: _ModelSpec) -> Predictor:
    predictor = Predictor(
        spec.model_dir,
        device=spec.device,
        settings=spec.settings,
        weights=WeightSources(overrides=dict(spec.weight_files)),
    )
    if predictor.model_provenance.weights_sha256 != spec.weights_sha256:
        raise ModelFolderError(
            f"{spec.model_dir} on {socket.gethostname()}: weights SHA-256 "
            f"{predictor.model_provenance.weights_sha256[:12]}... differs from the driver's "
            f"({spec.weights_sha256[:12]}...); every node must see the same model folder"
        )
    return predictor


def _given_up(item: ScanItem, deaths: int) -> PreparedInput:
    name = display_path(item.path)
    return PreparedInput(
        path=name,
        kind=item.kind,
        sha256=None,
        error=f"{name}: the worker preparing it died {deaths} time{'s' if deaths != 1 else ''} (killed while "
        "reading, decoding or detecting faces: a decoder crash or out of memory); not scored",
    )


class _Preparing:
    """Preparation of a group's files under the crash guard (in a model worker or a CPU task)."""

    def __init__(
        self, preparer: Predictor | InputPreparer, guard: Any, hook: CrashHook | None, max_crashes: int
    ):
        self.preparer, self.guard, self.hook, self.max_crashes = preparer, guard, hook, max_crashes

    def group(self, group: Hashable, parts: list[list[ScanItem]]) -> tuple[list[list[PreparedInput]], bool]:
        """Each walk group's files prepared, in the same parts; and whether this was a retry."""
        items = [item for part in parts for item in part]
        prepared, retried = run_guarded(
            self.guard, ("prepare", group), items, self._prepare, _given_up, self.max_crashes
        )
        out, at = [], 0
        for part in parts:
            out.append(prepared[at : at + len(part)])
            at += len(part)
        return out, retried

    def _prepare(self, items: Iterable[ScanItem]) -> list[PreparedInput]:
        prepared = []
        for item in items:
            if self.hook is not None:
                self.hook.check(item.path)
            prepared.append(prepare_item(self.preparer, item))
        return prepared


def _score(
    predictor: Predictor,
    group: Hashable,
    parts: list[list[PreparedInput]],
    guard: Any,
    retried: bool,
    max_crashes: int,
) -> list[InputResult]:
    """Each walk group's faces through the model (its own batches of ``batch_size``, as the local
    engine cuts them), then each file's result, in walk order."""
    ray = import_ray()
    if retried:  # a worker died on this group before: was it in the model?
        died = ray.get(guard.start.remote(("model", group)))
        if died >= max_crashes:
            raise DataError(
                f"{parts[0][0].path} and the files after it: the model worker died {died} times on their "
                "batches; check the workers' memory (GPU and host), then resume the scan"
            )
    results = []
    for prepared in parts:
        faces = [face for p in prepared for face in p.faces]
        predictions = predictor.predict_faces(faces) if faces else []
        at = 0
        for p in prepared:
            results.append(predictor.result(p, predictions[at : at + len(p.faces)]))
            at += len(p.faces)
    if retried:
        guard.finish.remote(("model", group))
    return results


@dataclass(frozen=True)
class _Failed:
    """A worker's GazeclipError, sent back as data: Ray Data keeps only the text of a UDF's exception."""

    error: GazeclipError


def _unpack(batch: dict[str, np.ndarray]) -> Iterable[tuple[int, Any]]:
    return ((int(g), pickle.loads(p)) for g, p in zip(batch["group"], batch["payload"], strict=True))


def _pack(groups: list[int], payloads: list[bytes]) -> dict[str, np.ndarray]:
    return {"group": np.array(groups, dtype=np.int64), "payload": np.array(payloads, dtype=object)}


class _ModelWorker:
    """A model worker fed by preparing tasks (split layout): loads the model once, on its GPU.

    A GazeclipError (in loading the model, or a group the model keeps dying on) is returned
    as the group's payload (:class:`_Failed`) for the driver to raise.
    """

    def __init__(self, spec: _ModelSpec, guard: Any, hook: CrashHook | None, max_crashes: int) -> None:
        worker_setup(spec.threads)
        self.guard, self.hook, self.max_crashes = guard, hook, max_crashes
        self.problem: GazeclipError | None = None
        try:
            self.predictor = _load_predictor(spec)
        except GazeclipError as exc:
            self.problem = exc  # raised on the driver with the first group

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        groups, payloads = [], []
        for group, work in _unpack(batch):
            try:
                if self.problem is not None:
                    raise self.problem
                results: list[InputResult] | _Failed = self.score(group, work)
            except GazeclipError as exc:
                results = _Failed(exc)
            groups.append(group)
            payloads.append(pickle.dumps(results, protocol=5))
        return _pack(groups, payloads)

    def score(self, group: int, work: Any) -> list[InputResult]:
        prepared, retried = work
        return _score(self.predictor, group, prepared, self.guard, retried, self.max_crashes)


class _FusedWorker(_ModelWorker):
    """A model worker that also prepares its files (CPU layout): loads the model once."""

    def score(self, group: int, work: Any) -> list[InputResult]:
        preparing = _Preparing(self.predictor, self.guard, self.hook, self.max_crashes)
        results = []
        for index, part in enumerate(work):  # a walk group at a time: only its faces are held
            prepared, retried = preparing.group((group, index), [part])
            results += _score(self.predictor, (group, index), prepared, self.guard, retried, self.max_crashes)
        return results


_PREPARERS: dict[bytes, InputPreparer] = {}  # per worker process: built once per spec


def _prepare_groups(
    batch: dict[str, np.ndarray], spec: _PrepSpec, guard: Any, hook: CrashHook | None, max_crashes: int
) -> dict[str, np.ndarray]:
    """A CPU task of the split layout: prepare each group's files (no model is loaded)."""
    key = pickle.dumps(spec)
    preparer = _PREPARERS.get(key)
    if preparer is None:
        import torch

        worker_setup(spec.threads)
        detector = (
            None
            if spec.preparation.aligned
            else FaceDetector(torch.device("cpu"), min_face_size=spec.preparation.min_face_size)
        )
        preparer = _PREPARERS[key] = InputPreparer(
            spec.settings, spec.preparation, spec.image_size, spec.uses_gaze, detector
        )
    preparing = _Preparing(preparer, guard, hook, max_crashes)
    groups, payloads = [], []
    for group, items in _unpack(batch):
        groups.append(group)
        payloads.append(pickle.dumps(preparing.group(group, items), protocol=5))
    return _pack(groups, payloads)
