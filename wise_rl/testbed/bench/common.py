"""What every benchmark shares: the results page, its section writer, the machine line, the result printer."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
    else:
        from wise_rl.training.precision import describe_cpu

        dev = f"CPU {describe_cpu()}, fp32 unless bf16 is set"
    return f"{dev}, {os.cpu_count()} cores visible, torch {torch.__version__} with {torch.get_num_threads()} threads"


def write_section(title: str, body: str, path: Path = DOC) -> Path:
    """Replace (or append) the ``## title`` section of the markdown file ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured with `wise-rl bench NAME`.\n"
    section = f"## {title}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def format_result(result: dict[str, Any]) -> str:
    """The scalar figures of a result, one ``key: value`` a line (per-sample lists and dicts are left out)."""
    return "\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()
                     if not isinstance(v, (dict, list)))
