"""Training precision that fits the hardware: bf16 on GPUs, fp32 on CPUs, an explicit setting always wins.

TRL's ``SFTConfig`` / ``GRPOConfig`` default to ``bf16=True``. On a CPU without native bf16 instructions (AMD Zen 3
and older, Intel before Cooper Lake / Sapphire Rapids) torch's autocast sends every bf16 matmul through a slow
reference GEMM: one training step of the ShapeWorld base took 8.4× longer in bf16 than in fp32 (see
``docs/benchmarks.md``). A CPU with AMX or AVX512-BF16 runs bf16 at full speed, but its results then differ from
every other CPU's, so the CPU default is fp32 everywhere and bf16 on a CPU is opt-in (``bf16: true``).

:func:`resolve_bf16` returns the value and a one-line reason; :func:`precision_argv` applies it to a recipe's
command line before TRL parses it (so ``TrainingArguments`` sees one consistent value from the start).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty when the file cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name as ``lscpu`` prints it (``platform.processor()`` where /proc/cpuinfo is missing)."""
    import platform

    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu(flags: set[str] | None = None) -> str:
    """``"MODEL (arch; avx2, avx512f, avx512_bf16)"``: the CPU model and the flags a training figure depends on
    ("no native bf16" when it has neither bf16 flag); ``flags`` defaults to :func:`cpu_flags`."""
    import platform

    flags = cpu_flags() if flags is None else flags
    simd = [f for f in ("avx2", "avx512f") if f in flags]
    native = [f for f in NATIVE_BF16_FLAGS if f in flags] or ["no native bf16"]
    return f"{cpu_model()} ({platform.machine()}; {', '.join(simd + native)})"


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (``flags`` defaults to :func:`cpu_flags`)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def resolve_bf16(explicit: bool | None, cuda: bool | None = None, flags: set[str] | None = None) -> tuple[bool, str]:
    """``(bf16, reason)``: ``explicit`` (a value from the config or the command line) always wins; otherwise bf16
    on CUDA and fp32 on a CPU. ``cuda`` defaults to ``torch.cuda.is_available()``."""
    if explicit is not None:
        return bool(explicit), f"bf16={bool(explicit)} as configured"
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return True, "bf16 on the GPU (TRL's default)"
    if cpu_has_native_bf16(flags):
        return False, ("fp32 on the CPU (it has native bf16, but fp32 keeps results equal across CPUs; "
                       "set bf16: true to use it)")
    return False, "fp32 on the CPU (no native bf16: autocast bf16 would take torch's slow reference GEMM)"


def _as_bool(value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"bf16: expected true or false, got {value!r}")


_LOGGED: set[str] = set()  # precision reasons already logged by this process


def precision_argv(argv: list[str], configured, use_cpu=None) -> list[str]:
    """``argv`` with ``--bf16 false`` (or ``true``) appended when nothing set ``bf16`` explicitly; ``configured``
    is the value found on the command line or in the YAML (None: not set). ``use_cpu: true`` counts as no CUDA.
    Logs the choice and its reason once per process (the demo parses several recipes in one process)."""
    explicit = _as_bool(configured)
    cuda = False if _as_bool(use_cpu) else None
    bf16, reason = resolve_bf16(explicit, cuda=cuda)
    if reason not in _LOGGED:
        _LOGGED.add(reason)
        logger.warning("precision: %s", reason)
    if explicit is not None:
        return argv
    return [*argv, "--bf16", "true" if bf16 else "false"]


def machine_info() -> dict:
    """The machine a run's figures belong to, for cards and reports: platform, CPU model and native bf16, CPU count,
    torch threads and version, the CUDA device (None on a CPU) and the Python version."""
    import os
    import platform

    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }
