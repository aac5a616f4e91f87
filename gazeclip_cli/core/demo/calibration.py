"""The calibration set the tool carries: renders of the embedded synthetic benchmark.

A static int8 export (``gazeclip export --runtime onnx-int8-static``) measures its activation
ranges on prepared faces. Without ``--calibration`` it takes these: every demo class (real and
each generator), rendered from a seed and split no demo run trains or tests on, so they fit a
model trained on the demo; a model trained on real faces should be calibrated on faces like
those it will scan (docs/INFERENCE.md, "Runtimes").
"""

from __future__ import annotations

from pathlib import Path

import cv2

from gazeclip_cli.core.demo.synthetic import GENERATORS, generate_sample
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.inference.fast_cpu import Calibration

CALIBRATION_SEED = 9_000_001  # no demo run uses it: the renders are none of a run's train, val or test faces
CALIBRATION_SPLIT = "val"
CALIBRATION_PER_CLASS = 4


def demo_calibration(folder: str | Path, per_class: int = CALIBRATION_PER_CLASS) -> Calibration:
    """Render ``per_class`` faces of every demo class into ``folder`` (PNG) and return them as a calibration.

    Raises:
        DataError: a render cannot be written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for gen in GENERATORS:
        for index in range(per_class):
            render = generate_sample(gen, CALIBRATION_SEED, index, CALIBRATION_SPLIT)
            path = folder / f"{gen.name}-{index}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(render.image, cv2.COLOR_RGB2BGR)):
                raise DataError(f"{path}: cannot write the calibration render")
            files.append(path)
    source = (
        f"the demo's synthetic renders ({per_class} per class of {len(GENERATORS)}, seed {CALIBRATION_SEED}, "
        f"split {CALIBRATION_SPLIT}; fit for models trained on the demo)"
    )
    return Calibration(files=tuple(files), source=source)
