"""Training rows from sample-schema rows (docs/ARCHITECTURE.md, the data path)::

    load_training_dataset(script_args) rows in the sample schema
      ├─ sft_rows:  {"image", "prompt": [user turn], "completion": [assistant turn]}   (completion-only loss)
      └─ grpo_rows: {"image", "prompt": [user turn], gt_* …}                           (gt columns reach rewards)

The prompt and the completion are separate columns, so TRL tokenises them separately, exactly as generation sees
the prompt: tokenising ``prompt + target`` as one string would change the BPE split at the boundary.
Messages carry string content; TRL's ``prepare_multimodal_messages`` puts the image placeholder before the text of
the user turn, and reads the single ``image`` column as ``images=[image]``.

``dataset: shapeworld`` is built by the testbed in :func:`load_training_dataset`: one of the core's seams into the
testbed (docs/ARCHITECTURE.md, "Core and testbed").
"""

from __future__ import annotations

import logging

from wise_rl import formats
from wise_rl.errors import ConfigError
from wise_rl.training.checks import prompt_templates
from wise_rl.training.script_args import SFT_TARGET_MODES, WiseScriptArguments

logger = logging.getLogger(__name__)


def training_frame(script_args: WiseScriptArguments, model_path=None) -> str | None:
    """The frame the training rows are written in: ``script_args.frame``, else the native frame of the family of
    the model folder ``model_path`` (:mod:`wise_rl.models.families`); None (an absolute family, or no local
    folder): the rows keep their own square (``abs{model_size}``)."""
    from wise_rl.frames import Frame

    if getattr(script_args, "frame", None):
        return str(Frame.parse(script_args.frame))
    from wise_rl.models.families import native_frame

    frame = native_frame(model_path) if model_path is not None else None
    return None if frame is None else str(frame)


def rows_in_frame(dataset, frame: str | None):
    """Sample-schema rows with ``gt_bbox``/``gt_points`` rewritten in ``frame`` (None: unchanged) and the
    ``frame`` column set. An absolute frame must be the rows' own square (their images are that size)."""
    from wise_rl import frames

    if frame is None:
        return dataset
    target = frames.Frame.parse(frame)

    def convert(row):
        source = frames.row_frame(row)
        if not target.relative and target.side != int(row["model_size"]):
            raise ConfigError(f"frame {target}: the rows' images are {row['model_size']}² (abs{row['model_size']}); "
                              "an absolute frame must match them (or use rel1000)")
        box, points = row.get("gt_bbox"), row.get("gt_points")
        return {"gt_bbox": None if box is None else frames.convert_bbox(box, source, target),
                "gt_points": None if points is None else frames.convert_points(points, source, target),
                "frame": str(target)}

    return dataset.map(convert, desc=f"rows in {target}")


def dataset_frame(dataset) -> str:
    """The frame name the rows are written in (``frame`` column, else ``abs{model_size}``); mixed frames raise."""
    from wise_rl import frames

    names = dataset["frame"] if "frame" in dataset.column_names else [None] * len(dataset)
    found = {str(frames.row_frame({"frame": f, "model_size": s})) for f, s in zip(names, dataset["model_size"])}
    if len(found) != 1:
        raise ConfigError(f"the training rows are written in several frames {sorted(found)}; use one (frame:)")
    return found.pop()


def load_training_dataset(script_args: WiseScriptArguments, model_path=None):
    """The training rows in the sample schema (``datasets.Dataset``), ground truth in :func:`training_frame`."""
    frame = training_frame(script_args, model_path)
    spec = script_args.dataset
    if spec == "shapeworld":
        from wise_rl.testbed.shapeworld import generate_dataset

        dd = generate_dataset(
            n_train=script_args.shapeworld_rows, n_test=0, seed=script_args.shapeworld_seed,
            image_size=script_args.shapeworld_image_size,
        )
        ds = dd["train"]
        if script_args.dataset_limit is not None:
            ds = ds.select(range(min(script_args.dataset_limit, len(ds))))
        return rows_in_frame(ds, frame)
    from wise_rl.data.columns import parse_columns
    from wise_rl.data.loaders import load_source

    ds = load_source(
        spec, split=script_args.dataset_split, model_size=script_args.model_size,
        skip_invalid=script_args.skip_invalid, limit=script_args.dataset_limit,
        lisa_texts="all",  # LISA folders: every text is a training query (evaluation keeps the first)
        columns=parse_columns(getattr(script_args, "dataset_columns", None), "dataset_columns"), frame=frame,
    )
    if len(ds) == 0:
        raise ConfigError(f"dataset: {spec!r} (split {script_args.dataset_split!r}) has no rows")
    return ds


def _user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def is_grounding_row(index: int, share: float) -> bool:
    """Row ``index`` is a grounding row when the running count ``floor((index + 1) · share)`` steps up there: the
    share is met on every prefix of the rows, not only on average."""
    return int((index + 1) * share) > int(index * share)


def sft_rows(dataset, prompt_template: str, target_mode: str = "wise", grounding_share: float = 0.0):
    """SFT rows ``{"image", "prompt": [user turn], "completion": [assistant turn]}`` from sample-schema rows.

    The target is ``formats.build_target(concise, answer_dict(gt_bbox, gt_points), detailed, target_mode)``.
    A row without the rationale the mode needs (``concise`` and ``detailed`` for ``wise``, ``detailed`` for
    ``verbose``, ``concise`` for ``concise``) raises a ``ValueError`` naming its id: build rationales first with
    ``wise-rl build-sft``.
    ``prompt_template`` may be a comma-separated list: row ``i`` gets template ``i mod len(list)``.
    ``grounding_share`` of the rows (:func:`is_grounding_row`) get the ``answer-only`` prompt and the answer block
    alone instead. Rows without ``gt_bbox`` (LISA's no-object samples) have nothing to answer: skipped, with a
    logged count. A row with a box and no points (your own box-only data) gets the box centre as both points.
    """
    if not 0 <= grounding_share < 1:
        raise ValueError(f"grounding_share must be in [0, 1), got {grounding_share}")
    if target_mode not in SFT_TARGET_MODES:
        raise ValueError(f"target_mode {target_mode!r} unknown; expected one of {', '.join(SFT_TARGET_MODES)}")
    templates = prompt_templates(prompt_template)
    if not templates:
        raise ValueError("prompt_template is empty")
    for template in templates:
        formats.render_prompt(template, "probe")  # unknown template → ValueError now, not inside map
    needed = {"wise": ("concise", "detailed"), "verbose": ("detailed",), "concise": ("concise",),
              "answer": ()}[target_mode]
    missing_cols = [c for c in ("query", "gt_bbox", "gt_points", *needed) if c not in dataset.column_names]
    if missing_cols:
        hint = "; build rationales with `wise-rl build-sft` first" if set(missing_cols) & set(needed) else ""
        raise ConfigError(f"SFT data lacks column(s) {missing_cols} needed for target_mode {target_mode!r}{hint}")
    _check_rationales(dataset, needed, target_mode)

    def convert(index, row_id, query, bbox, points, concise=None, detailed=None):
        for name, value in (("concise", concise), ("detailed", detailed)):
            if name in needed and not (value or "").strip():
                raise ConfigError(
                    f"SFT row {row_id!r}: empty {name!r} rationale (target_mode {target_mode!r}); "
                    "build rationales with `wise-rl build-sft` first"
                )
        if points is None:  # a box-only row (your own data): the box centre stands for both points
            points = [[(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2]] * 2
        answer = formats.answer_dict(bbox, points)
        if is_grounding_row(index, grounding_share):
            return {"prompt": _user_turn(formats.render_prompt("answer-only", query)),
                    "completion": [{"role": "assistant", "content": formats.build_target("", answer, "", "answer")}]}
        target = formats.build_target(concise or "", answer, detailed or "", target_mode)
        return {
            "prompt": _user_turn(formats.render_prompt(templates[index % len(templates)], query)),
            "completion": [{"role": "assistant", "content": target}],
        }

    inputs = ["id", "query", "gt_bbox", "gt_points", "concise", "detailed"]
    inputs = [c for c in inputs if c in dataset.column_names]
    if "id" not in inputs:
        dataset = dataset.add_column("id", [str(i) for i in range(len(dataset))])
        inputs.insert(0, "id")

    def fn(*cols):
        *cols, index = cols
        kw = dict(zip(inputs, cols))
        return convert(index, kw["id"], kw["query"], kw["gt_bbox"], kw["gt_points"], kw.get("concise"), kw.get("detailed"))

    no_object = [i for i, box in enumerate(dataset["gt_bbox"]) if box is None]
    if no_object:  # LISA's no-object samples: an empty target, nothing to answer — a counted skip
        logger.warning("SFT: skipping %d of %d rows without gt_bbox (no-object samples: empty target)",
                       len(no_object), len(dataset))
        dataset = dataset.select(sorted(set(range(len(dataset))) - set(no_object)))
    drop = [c for c in dataset.column_names if c != "image"]
    return dataset.map(fn, input_columns=inputs, remove_columns=drop, with_indices=True, desc="SFT rows")


def _check_rationales(dataset, needed: tuple[str, ...], target_mode: str) -> None:
    """Before the row conversion: rows whose ``needed`` rationale is empty (None or blank) raise a
    :class:`ConfigError` with their count and the first id, in one line (rows without ``gt_bbox`` are skipped
    later and not counted)."""
    boxes = dataset["gt_bbox"]
    for name in needed:
        empty = [i for i, (text, box) in enumerate(zip(dataset[name], boxes))
                 if box is not None and not (text or "").strip()]
        if empty:
            first = dataset[empty[0]]["id"] if "id" in dataset.column_names else empty[0]
            raise ConfigError(f"SFT data: {len(empty)} of {len(dataset)} rows have an empty {name!r} rationale "
                              f"(first: row {empty[0]}, id {first!r}), which target_mode {target_mode!r} needs; "
                              "build rationales with `wise-rl build-sft` first")


def grpo_rows(dataset, prompt_template: str = "wise-train"):
    """GRPO/RLOO rows: every sample-schema column kept (``image`` plus ``gt_*`` for the rewards) and a
    conversational ``prompt`` (the user turn; TRL inserts the image placeholder before its text)."""
    formats.render_prompt(prompt_template, "probe")
    if "query" not in dataset.column_names or "image" not in dataset.column_names:
        raise ValueError(f"GRPO data needs 'query' and 'image' columns, has {dataset.column_names}")
    drop = ["prompt"] if "prompt" in dataset.column_names else []
    return dataset.map(
        lambda q: {"prompt": _user_turn(formats.render_prompt(prompt_template, q))},
        input_columns=["query"], remove_columns=drop, desc="GRPO rows",
    )
