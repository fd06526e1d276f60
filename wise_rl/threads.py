"""CPU threads for the recipes and the ``wise-rl`` verbs: chosen to fit the machine and the model, set once, recorded.

torch uses one thread per core by default. For a small model each matmul is too short to split: the threads spend
their time synchronising, and on a machine where other processes hold some of the cores every step waits for the
slowest thread. On a busy 2-core machine the default made ``wise-rl eval`` of the ShapeWorld base 31× slower than
one thread (``docs/benchmarks.md``, "Threads"). So:

* an explicit count wins: ``--threads N`` (verbs and recipes), else ``WISE_RL_THREADS``. ``OMP_NUM_THREADS`` is
  not one: ``accelerate launch`` sets it to the core count for every CPU child, chosen or not (a tiny SFT step took
  3.3 s under it against 0.45 s with one thread);
* on a GPU the count does not matter for the model and is left at torch's default;
* on a CPU, a model under :data:`SMALL_MODEL_BYTES` of weights (file size) gets 1 thread; a larger (or unknown) one
  gets every core this process may run on (``os.sched_getaffinity``).

:func:`apply_threads` calls ``torch.set_num_threads`` and logs one line; :func:`threads_record` is what
``metrics.json``, run records and reports store beside a latency: the count, why, and the CPU
(:func:`wise_rl.training.precision.cpu_model`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from wise_rl.errors import UsageError

logger = logging.getLogger(__name__)

ENV = "WISE_RL_THREADS"
SMALL_MODEL_BYTES = 200 * 1024 * 1024  # ~50 M fp32 parameters: below this one thread is fastest on a CPU
_CHOSEN: dict = {}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where affinity is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def model_bytes(model: str | os.PathLike | None) -> int | None:
    """Bytes of weight files (``*.safetensors``, ``*.bin``) in a local model folder; None for a hub id or no model."""
    if model is None:
        return None
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    files = [p for pattern in ("*.safetensors", "*.bin") for p in folder.glob(pattern)]
    return sum(p.stat().st_size for p in files) or None


def parse_threads(value, where: str) -> int:
    """``value`` as a thread count ≥ 1; :class:`UsageError` naming ``where`` otherwise."""
    try:
        n = int(str(value).strip())
    except ValueError:
        raise UsageError(f"{where}: expected a whole number of threads ≥ 1, got {value!r}") from None
    if n < 1:
        raise UsageError(f"{where}: expected a whole number of threads ≥ 1, got {value!r}")
    return n


def choose_threads(explicit=None, model: str | os.PathLike | None = None, cuda: bool | None = None,
                   cores: int | None = None, env: dict | None = None, source: str = "--threads") -> tuple[int | None, str]:
    """``(threads, reason)``. ``threads`` is None where torch's default should stay (a GPU run). ``explicit`` is a
    count given by ``source`` (``--threads``, a profile); ``env`` defaults to ``os.environ``; ``cores`` to
    :func:`available_cores`; ``cuda`` to ``torch.cuda.is_available()``. Raises :class:`UsageError` for a count that
    is not a whole number ≥ 1."""
    env = os.environ if env is None else env
    if explicit is not None:
        return parse_threads(explicit, source), source
    if env.get(ENV):
        return parse_threads(env[ENV], ENV), ENV
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return None, "GPU run: torch's default"
    cores = available_cores() if cores is None else cores
    size = model_bytes(model)
    if size is not None and size < SMALL_MODEL_BYTES:
        return 1, f"small model ({size / 2**20:.0f} MiB of weights): 1 thread beats {cores} on a CPU"
    return cores, f"{cores} cores available" + ("" if size is None else f" for {size / 2**30:.1f} GiB of weights")


def apply_threads(explicit=None, model: str | os.PathLike | None = None, cuda: bool | None = None,
                  source: str = "--threads") -> dict:
    """Choose (:func:`choose_threads`), ``torch.set_num_threads``, log one line; returns :func:`threads_record`."""
    import torch

    n, reason = choose_threads(explicit, model, cuda, source=source)
    if n is not None:
        torch.set_num_threads(n)
    _CHOSEN.clear()
    _CHOSEN.update(reason=reason)
    logger.info("threads: %d (%s; --threads N or %s=N to override)", torch.get_num_threads(), reason, ENV)
    return threads_record()


def threads_record() -> dict:
    """``{"threads", "threads_reason", "cpu_model", "cpu_count"}``: the setting a latency was measured under (the
    reason is ``"torch default"`` when :func:`apply_threads` was not called in this process)."""
    import torch

    from wise_rl.training.precision import cpu_model

    return {"threads": torch.get_num_threads(), "threads_reason": _CHOSEN.get("reason", "torch default"),
            "cpu_model": cpu_model(), "cpu_count": available_cores()}


def pop_threads_flag(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--threads N`` / ``--threads=N`` and its value (None when absent): the recipes take the
    flag before TRL parses the rest."""
    for i, token in enumerate(argv):
        if token == "--threads":
            if i + 1 >= len(argv):
                raise UsageError("--threads needs a value (a whole number ≥ 1)")
            return argv[:i] + argv[i + 2:], argv[i + 1]
        if token.startswith("--threads="):
            return argv[:i] + argv[i + 1:], token.split("=", 1)[1]
    return argv, None
