"""How a trained model wants to be prompted: ``wise_rl.json`` in the model folder, next to ``config.json``.

The recipes write it into ``output_dir`` when training starts (so the final model and every ``checkpoint-N`` below
it have it), ``wise-rl export`` copies it into the merged folder, and ``wise-rl eval`` / ``infer`` read it: with no
``--prompt`` they use the prompt the model was trained for, and an explicit prompt that asks for another layout or
another wording gets a warning. Contents::

    {"target_mode": "wise" | "verbose" | "answer",      # what the completions contain
     "prompt_templates": ["wise-train-compact", ...],    # the templates of the training rows
     "prompt_style": "official" | "compact",             # formats.styled_prompt wording
     "eval_prompt": "wise-compact",                      # the inference prompt for `wise-rl eval`
     "infer_prompt": "wise-s-compact",                   # ... and for `wise-rl infer`
     "recipe": "sft" | "grpo" | "rloo",
     "frame": "rel1000" | "abs840" | ...}              # the frame the training rows' coordinates were in

:func:`resolve_frame` says which frame a model answers in: an explicit choice, else ``frame`` from
``wise_rl.json``, else the family's native frame (:mod:`wise_rl.models.families`; an absolute family: the square
its processor pins, 840 for real checkpoints).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from wise_rl import formats

logger = logging.getLogger(__name__)

FILENAME = "wise_rl.json"
# Without a wise_rl.json (a hub model, the shipped base): the commands' historical defaults.
FALLBACK_PROMPT = {"eval": "wise", "infer": "wise-s"}
# The inference prompt for each trained target mode (official names; styled_prompt gives the wording).
_INFERENCE_PROMPT = {"eval": {"wise": "wise", "verbose": "verbose", "answer": "answer-only"},
                     "infer": {"wise": "wise-s", "verbose": "verbose", "answer": "answer-only"}}


def prompt_style(template: str) -> str | None:
    """'compact' for a ``*-compact`` template, 'official' for an official one, None for ``answer-only`` (one
    wording serves both styles)."""
    base = template.removesuffix(formats.COMPACT_SUFFIX)
    if base == "answer-only":
        return None
    return "compact" if template.endswith(formats.COMPACT_SUFFIX) else "official"


def training_record(prompt_templates: list[str], recipe: str, frame: str | None = None) -> dict[str, Any]:
    """The ``wise_rl.json`` content for a run trained on rows rendered with ``prompt_templates`` whose coordinates
    are in ``frame`` (a :class:`wise_rl.frames.Frame` name; None leaves it out)."""
    if not prompt_templates:
        raise ValueError("training_record: no prompt template")
    modes = {formats.PROMPT_SPECS[t]["target_mode"] for t in prompt_templates}
    if len(modes) != 1:
        raise ValueError(f"training_record: templates {prompt_templates} ask for different targets {sorted(modes)}")
    mode = modes.pop()
    styles = {s for s in map(prompt_style, prompt_templates) if s is not None}
    style = "compact" if styles == {"compact"} else "official"
    return {"target_mode": mode, "prompt_templates": list(prompt_templates), "prompt_style": style,
            "eval_prompt": formats.styled_prompt(_INFERENCE_PROMPT["eval"][mode], style),
            "infer_prompt": formats.styled_prompt(_INFERENCE_PROMPT["infer"][mode], style), "recipe": recipe,
            **({"frame": str(frame)} if frame is not None else {})}


def resolve_frame(model_dir, frame=None, square: int | None = None):
    """The :class:`wise_rl.frames.Frame` the model in ``model_dir`` answers in: ``frame`` when given (a name, an
    int S or a Frame), else ``wise_rl.json``'s ``frame``, else the family's native one (``rel1000``; for an
    absolute family ``abs{square}``: the square its processor pins, else 840). A model folder of an unsupported
    family without either raises :class:`wise_rl.errors.ConfigError`."""
    from wise_rl import frames
    from wise_rl.models.families import try_detect_family

    record = read(model_dir) if model_dir is not None else None
    trained = frames.Frame.parse(record["frame"]) if record and record.get("frame") else None
    if frame is not None:
        frame = frames.Frame.parse(frame)
        if trained is not None and frame != trained:
            logger.warning("frame: %s asked for, but the model was trained to answer in %s (%s): its answers will "
                           "be read in the wrong frame unless it really answers in %s", frame, trained, find(model_dir),
                           frame)
        return frame
    if trained is not None:
        return trained
    family = try_detect_family(model_dir) if model_dir is not None else None
    if family is not None and family.native_frame != "abs":
        return family.frame()
    return frames.Frame(square or frames.DEFAULT_MODEL_SIZE)


def write(model_dir, record: dict[str, Any]) -> Path:
    path = Path(model_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def find(model_dir) -> Path | None:
    """``wise_rl.json`` of a model folder, or of its parent for a ``checkpoint-N`` folder; None when absent."""
    folder = Path(model_dir)
    for candidate in (folder / FILENAME, folder.parent / FILENAME if folder.name.startswith("checkpoint-") else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def read(model_dir) -> dict[str, Any] | None:
    """The model's ``wise_rl.json`` as a dict, None without one; a file that is not a JSON object is an error."""
    path = find(model_dir)
    if path is None:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return record


def resolve_prompt(model_dir, prompt: str | None, purpose: str = "eval") -> tuple[str, str | None]:
    """``(prompt to use, a warning or None)``. ``prompt`` None: the model's recorded prompt for ``purpose`` ('eval'
    or 'infer'), else :data:`FALLBACK_PROMPT`. An explicit prompt is kept; the warning says when it asks for another
    completion or another wording than the model was trained on, and which prompt would match."""
    record = read(model_dir)
    if prompt is None:
        if record is None:
            return FALLBACK_PROMPT[purpose], None
        return record[f"{purpose}_prompt"], None
    if record is None:
        return prompt, None
    trained_mode, trained_style = record.get("target_mode"), record.get("prompt_style")
    asks_for = formats.PROMPT_SPECS[prompt]["target_mode"]
    style = prompt_style(prompt)
    problems = []
    if trained_mode and asks_for != trained_mode and asks_for != "answer":
        problems.append(f"asks for a {asks_for!r} completion, the model was trained on {trained_mode!r}")
    if style is not None and trained_style and style != trained_style:
        problems.append(f"is in the {style} wording, the model learnt the {trained_style} one")
    if not problems:
        return prompt, None
    return prompt, (f"--prompt {prompt} {' and '.join(problems)} ({find(model_dir)}); "
                    f"--prompt {record.get(f'{purpose}_prompt')} matches its training")


def prompt_for_command(model_dir, prompt: str | None, verb: str) -> str:
    """:func:`resolve_prompt` for ``wise-rl eval`` / ``infer``: prints the prompt chosen when none was given, and
    the mismatch warning (stderr)."""
    import sys

    resolved, warning = resolve_prompt(model_dir, prompt, verb)
    if warning:
        print(f"wise-rl {verb}: warning: {warning}", file=sys.stderr)
    if prompt is None and source_missing(model_dir):
        print(f"wise-rl {verb}: warning: {model_dir} has no {FILENAME} (how the model was trained to be prompted); "
              f"using the default prompt {resolved}. A wise-rl training output or export without it is incomplete: "
              "re-run the training or the export", file=sys.stderr)
    stale = stale_record(model_dir)
    if stale:
        print(f"wise-rl {verb}: warning: {stale}", file=sys.stderr)
    if prompt is None:
        source = find(model_dir)
        print(f"prompt: {resolved} (" + (f"from {source}" if source else f"default; the model has no {FILENAME}") + ")")
    return resolved


def source_missing(model_dir) -> bool:
    """True for a local model folder without a ``wise_rl.json`` (its own or, for ``checkpoint-N``, its run's)."""
    return Path(model_dir).is_dir() and find(model_dir) is None


def stale_record(model_dir) -> str | None:
    """A warning when ``model_dir``'s own ``wise_rl.json`` records the digest of other weights than those beside
    it (the folder was overwritten by another training or export); None otherwise."""
    path = Path(model_dir) / FILENAME
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("weights_digest")
    except (OSError, ValueError, AttributeError):
        return None
    if recorded is None or recorded == weights_digest(model_dir):
        return None
    return (f"{path} describes other weights than the ones beside it (the folder was overwritten after it was "
            "written): the prompt it records may not be this model's")


def weights_digest(model_dir) -> str | None:
    """What tells two trainings apart when they were saved to the same path:
    :func:`wise_rl.models.folder_check.weights_digest` (None when the folder holds no weight file)."""
    from wise_rl.models.folder_check import weights_digest as digest

    return digest(model_dir)
