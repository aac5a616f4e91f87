"""Where tensors run: the one ``--device`` resolver every command uses, and the autocast rule.

Nothing here touches CUDA at import; :func:`resolve_device` asks torch only when called.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext

import torch

from gazeclip_cli.core.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"(cpu|cuda)(:(\d+))?")


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> a device.

    Raises:
        ConfigError: an unknown name (``gpu``, ``mps``, ``cpu:1``...), or CUDA (or CUDA device N)
            asked for where there is none; one line that says what to use instead.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = _DEVICE.fullmatch(text)
    if match is None or (match.group(1) == "cpu" and match.group(3) not in (None, "0")):
        raise ConfigError(f"--device {name}: not a device; use {DEVICE_CHOICES}")
    if match.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if match.group(3) is not None:
        index, count = int(match.group(3)), torch.cuda.device_count()
        if index >= count:
            raise ConfigError(
                f"--device {name}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                f"(cuda:0..cuda:{count - 1}); use one of them or auto"
            )
        return torch.device("cuda", index)
    return torch.device("cuda")


def autocast_for(device: torch.device, amp: str) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA (``auto``/``bf16``); a CPU runs in fp32 unless bf16 is asked for."""
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
