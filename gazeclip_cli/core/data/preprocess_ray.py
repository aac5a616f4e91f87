"""The Ray engine of ``preprocess``: each batch of same-size images detected, prepared and estimated by Ray workers.

The driver keeps the cache's bookkeeping as the local run does (reading and hashing the
inputs, decoding, dedup by content, the journal, resume); only
:func:`~gazeclip_cli.core.data.preprocess.prepare_faces` of each batch runs in a worker, so
the cache is the one the local engine writes. docs/SCALE-OUT.md gives the reasons.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from gazeclip_cli.core.data.cache import PreprocessSettings
from gazeclip_cli.core.data.face_prep import FacePreparer
from gazeclip_cli.core.data.faces import FaceDetector
from gazeclip_cli.core.data.images import display_path
from gazeclip_cli.core.data.preprocess import FaceResult, PreprocessSummary, _Run, _Unit, prepare_faces
from gazeclip_cli.core.ray_engine import (
    CrashHook,
    RayOptions,
    import_ray,
    joined,
    plan_workers,
    reraise_cause,
    run_guarded,
    start_guard,
    worker_setup,
)

IN_FLIGHT_PER_WORKER = 2  # batches queued at each worker: one running, one arriving


class _PrepareWorker:
    """A Ray actor: the detector and the gaze estimator, loaded once, on its device."""

    def __init__(
        self,
        settings: PreprocessSettings,
        device: str,
        estimator: list[Any],
        threads: int,
        guard: Any,
        hook: CrashHook | None,
        max_crashes: int,
    ) -> None:
        worker_setup(threads)
        self.preparer = FacePreparer(settings)
        where = torch.device(device)  # Ray gave this actor its GPU (CUDA_VISIBLE_DEVICES), if any
        self.detector = (
            None if settings.aligned else FaceDetector(where, min_face_size=settings.min_face_size)
        )
        # The estimator comes as [object ref] (or []): a ref in a list is not resolved by Ray, so the
        # actor's arguments stay inline and Ray does not warn about restarts needing the object store.
        ray = import_ray()
        self.estimator = ray.get(estimator[0]).to(where).eval() if estimator else None
        self.guard, self.hook, self.max_crashes = guard, hook, max_crashes

    def process(
        self, batch: int, images: list[np.ndarray], names: list[str], batch_size: int
    ) -> list[list[FaceResult]]:
        def run(chunk: list[tuple[str, np.ndarray]]) -> list[list[FaceResult]]:
            if self.hook is not None:
                for name, _ in chunk:
                    self.hook.check(name)
            return prepare_faces(
                self.preparer, self.detector, self.estimator, [im for _, im in chunk], batch_size
            )

        results, _ = run_guarded(
            self.guard,
            ("batch", batch),
            list(zip(names, images, strict=True)),
            run,
            _given_up,
            self.max_crashes,
        )
        return results


def _given_up(item: tuple[str, np.ndarray], deaths: int) -> list[FaceResult]:
    reason = (
        f"the worker detecting its faces died {deaths} time{'s' if deaths != 1 else ''} (a crash or out of "
        "memory); tried again by the next run"
    )
    return [FaceResult(0, "worker_crash", reason)]


class RayRun(_Run):
    """A preprocessing run whose batches go to Ray workers (see the module docstring)."""

    def __init__(self, *args: Any, options: RayOptions) -> None:
        super().__init__(*args)
        # Decoding happens here: each worker detects and estimates with its own CPUs or GPU.
        self.options = dataclasses.replace(options, split=False)
        self.actors: list[Any] = []
        self.load: dict[int, int] = {}
        self.in_flight: dict[Any, tuple[list[_Unit], int]] = {}
        self.batches = 0

    def run(self) -> PreprocessSummary:
        ray = import_ray()
        with joined(self.options) as cluster:
            plan = plan_workers(cluster, self.options)
            guard = start_guard()
            worker = ray.remote(
                num_cpus=plan.cpus_per_actor,
                num_gpus=plan.gpus_per_actor,
                max_restarts=-1,
                max_task_retries=-1,
            )(_PrepareWorker)
            estimator = [] if self.estimator is None else [ray.put(self.estimator)]
            hook = CrashHook.from_env()
            self.actors = [
                worker.remote(
                    self.settings,
                    plan.device,
                    estimator,
                    plan.cpus_per_task,
                    guard,
                    hook,
                    self.options.max_crashes,
                )
                for _ in range(plan.actors)
            ]
            self.load = dict.fromkeys(range(len(self.actors)), 0)
            try:
                return super().run()
            except ray.exceptions.RayError as exc:
                reraise_cause(exc)
                raise
            finally:
                for handle in [*self.actors, guard]:
                    ray.kill(handle)

    def process(self, units: list[_Unit]) -> None:
        """Hand the batch to the least busy worker; store whichever batches are done."""
        images = [u.image for u in units]
        names = [display_path(u.row.file) for u in units]
        for unit in units:
            unit.image = None
        index = min(self.load, key=lambda i: self.load[i])
        ref = self.actors[index].process.remote(self.batches, images, names, self.batch_size)
        self.batches += 1
        self.load[index] += 1
        self.in_flight[ref] = (units, index)
        self.collect(wait=len(self.in_flight) >= IN_FLIGHT_PER_WORKER * len(self.actors))

    def flush(self) -> None:
        super().flush()
        while self.in_flight:
            self.collect(wait=True)

    def collect(self, wait: bool) -> None:
        """Store the finished batches (at least one when ``wait``)."""
        ray = import_ray()
        ready, _ = ray.wait(
            list(self.in_flight), num_returns=1 if wait else len(self.in_flight), timeout=None if wait else 0
        )
        for ref in ready:
            units, index = self.in_flight.pop(ref)
            self.load[index] -= 1
            self.store(units, ray.get(ref))
