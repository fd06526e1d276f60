"""What a ShapeWorld base sees: box accuracy, naming the queried shape, and a linear probe of its vision tokens.

- :func:`quick_eval`: greedy answers (:class:`wise_rl.evaluate.HFGenerator`) → ``box_acc50``, ``box_mean_iou``
  (:func:`wise_rl.metrics.box_scores`: pixel-inclusive box IoU, as the ShapeWorld baselines) and ``format_valid``;
- :func:`family_box_scores`: box acc@0.5 per query family next to the random-shape baseline of the same rows;
- :func:`name_eval`: answers to :data:`~wise_rl.testbed.pretrain.rows.NAME_PROMPT` scored against the target's
  colour and kind, with their chance levels;
- :func:`vision_probe`: logistic regression (scikit-learn) of colour and kind on the merged vision token at each
  shape's centre;
- :func:`score_perception`: naming + probe written into an existing base's ``card.json`` / ``model_card.md``
  (``wise-rl pretrain-base --score-perception``); a folder without a card raises ``FileNotFoundError``.

Measurements made with these: ``docs/testbed.md``, "Base model".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wise_rl import formats
from wise_rl.metrics import box_scores
from wise_rl.testbed.pretrain.base_card import CARD_JSON, CARD_MD, model_card_markdown
from wise_rl.testbed.pretrain.rows import PROMPT, name_prompt_text


def quick_eval(model, processor, rows: list[dict[str, Any]], batch_size: int = 32,
               max_new_tokens: int = 64, prompt: str = PROMPT) -> dict[str, float]:
    """Greedy generation (the eval path's :class:`HFGenerator`, question worded by ``prompt``) on ``rows``:
    box_acc50, box_mean_iou and format_valid (share whose completion is exactly one valid answer block, the
    pre-training target whatever the wording)."""
    from wise_rl.evaluate import HFGenerator
    from wise_rl.models import eval_mode

    gen = HFGenerator(model, processor, prompt, max_new_tokens=max_new_tokens)
    answers, valid = [], 0
    with eval_mode(model):
        for s in range(0, len(rows), batch_size):
            batch = rows[s : s + batch_size]
            outs = gen([r["image"] for r in batch], [r["query"] for r in batch])
            for o in outs:
                parsed = formats.parse_for_prompt(o.completion, PROMPT)
                answers.append(parsed.answer)
                valid += bool(parsed.ok)
    out = box_scores(answers, [r["gt_bbox"] for r in rows])
    out["format_valid"] = valid / len(rows) if rows else 0.0
    return out


def named_shape(text: str) -> str:
    """The shape a naming answer names: its first three words, lower-cased ('the red pentagon at the top' →
    'the red pentagon')."""
    return " ".join(text.lower().split()[:3])


def name_generator(model, processor, max_new_tokens: int = 16):
    """The eval path's :class:`~wise_rl.evaluate.HFGenerator` asking :data:`NAME_PROMPT` (greedy, ends at eos)."""
    from wise_rl.evaluate import HFGenerator, chat_messages

    class NameGenerator(HFGenerator):
        def prompt_texts(self, queries):
            return [self.processor.apply_chat_template(chat_messages(name_prompt_text(q)),
                                                       add_generation_prompt=True, tokenize=False)
                    for q in queries]

    return NameGenerator(model, processor, PROMPT, max_new_tokens=max_new_tokens, stop=None)


def name_eval(model, processor, rows: list[dict[str, Any]], batch_size: int = 32,
              max_new_tokens: int = 16, generator=None) -> dict[str, Any]:
    """Greedy answers to :data:`NAME_PROMPT` on ``rows`` (:func:`~wise_rl.testbed.shapeworld.described_sample_at`
    rows): what the model sees, in words, which is what every rationale is made of.

    name_acc       = share whose answer names the target's colour and kind ('the red pentagon …')
    name_in_scene  = share whose answer names a colour + kind present in the scene (any shape)
    random_shape   = expected name_acc of naming a random shape of the scene: mean over rows of
                     (shapes with the target's colour and kind) / (number of shapes)
    random_guess   = expected name_in_scene of a blind guess (a uniformly random colour and kind): mean over rows
                     of (distinct colour + kind pairs in the scene) / (colours × kinds)

    ``generator(images, queries)`` → completions defaults to :func:`name_generator`.
    """
    if not rows:
        raise ValueError("name_eval: no rows")
    from wise_rl.models import eval_mode
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    gen = generator or name_generator(model, processor, max_new_tokens)
    right = in_scene = 0
    chance = guess = 0.0
    examples = []
    with eval_mode(model):
        for s in range(0, len(rows), batch_size):
            batch = rows[s : s + batch_size]
            for row, out in zip(batch, gen([r["image"] for r in batch], [r["query"] for r in batch]), strict=True):
                said = named_shape(out.completion)
                target = named_shape(row["target_name"])
                names = [f"the {n}" for n in row["shape_names"]]
                right += said == target
                in_scene += said in names
                chance += names.count(target) / len(names)
                guess += len(set(names)) / (len(COLOURS) * len(KINDS))
                if len(examples) < 3:
                    examples.append({"query": row["query"], "target": row["target_name"],
                                     "answer": out.completion.strip()})
    n = len(rows)
    return {"n": n, "name_acc": right / n, "name_in_scene": in_scene / n, "random_shape": chance / n,
            "random_guess": guess / n, "examples": examples}


def naming_rows(seed: int, n: int, image_size: int = 112) -> list[dict[str, Any]]:
    """The first ``n`` scenes of the held-out test split (seed ``seed``) with their words, for :func:`name_eval`."""
    from wise_rl.testbed.shapeworld import described_sample_at

    return [described_sample_at(seed, "test", i, image_size) for i in range(n)]


def vision_probe(model, processor, rows: list[dict[str, Any]], train_share: float = 0.7) -> dict[str, Any]:
    """Does the vision tower see colour and kind? A linear probe on what the language model receives.

    For each shape of each row (:func:`naming_rows` rows), the merged vision token whose cell holds the shape's
    centre (cells of ``patch_size · merge_size`` pixels, row-major, as the processor orders them) is a feature
    vector; a multinomial logistic regression (scikit-learn, ``max_iter`` 3000) is fitted on the first
    ``train_share`` of the shapes and scored on the rest:

    colour_acc / kind_acc   = accuracy of the probe on the vision token (chance: colour_majority / kind_majority,
                              the most frequent class's share of the scored shapes)
    cell_rgb_colour_acc     = the same probe on the mean RGB of the cell's pixels: what a tower that only kept
                              the cell's average colour would give
    """
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from wise_rl.models import eval_mode
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    ip = processor.image_processor
    cell = ip.patch_size * ip.merge_size
    feats, rgb, colour, kind = [], [], [], []
    with eval_mode(model):
        for row in rows:
            enc = ip(images=[row["image"]], return_tensors="pt")
            with torch.no_grad():
                out = model.model.get_image_features(enc["pixel_values"].to(model.device),
                                                     enc["image_grid_thw"].to(model.device))
            emb = getattr(out, "pooler_output", None)
            emb = out[0] if emb is None else emb
            emb = emb[0] if isinstance(emb, (list, tuple)) else emb
            emb = emb.reshape(-1, emb.shape[-1]).float().cpu().numpy()
            width = row["image"].size[0] // cell
            pixels = np.asarray(row["image"], dtype=np.float32) / 255.0
            for box, name in zip(row["shape_boxes"], row["shape_names"], strict=True):
                cx, cy = int((box[0] + box[2]) / 2) // cell, int((box[1] + box[3]) / 2) // cell
                feats.append(emb[cy * width + cx])
                rgb.append(pixels[cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell].reshape(-1, 3).mean(0))
                c, k = name.split()
                colour.append(list(COLOURS).index(c))
                kind.append(KINDS.index(k))
    n = len(feats)
    split = int(train_share * n)
    if split < 10 or n - split < 10:
        raise ValueError(f"vision_probe: {n} shapes are too few for a {train_share:.0%} split; use more rows")
    feats, rgb, colour, kind = map(np.asarray, (feats, rgb, colour, kind))

    def score(x, y):
        return float(LogisticRegression(max_iter=3000).fit(x[:split], y[:split]).score(x[split:], y[split:]))

    def majority(y):
        return float(np.bincount(y[split:]).max() / (n - split))

    return {"n_shapes": n, "n_scored": n - split, "colour_acc": score(feats, colour), "kind_acc": score(feats, kind),
            "colour_majority": majority(colour), "kind_majority": majority(kind),
            "cell_rgb_colour_acc": score(rgb, colour)}


def score_perception(out, eval_n: int | None = None, batch_size: int = 32, probe_n: int = 700) -> dict[str, Any]:
    """What the model in ``out`` sees: :func:`name_eval` on ``eval_n`` held-out scenes (default: its card's) and
    :func:`vision_probe` on ``probe_n`` of them, written into its ``card.json`` (``naming``, ``vision_probe``) and
    ``model_card.md``; returns both. For bases trained before the card carried them."""
    import torch

    from wise_rl.models import load_model, load_processor

    out = Path(out)
    card_path = out / CARD_JSON
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path}: no card; score_perception updates the card of a pretrain-base folder")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    cfg = card.get("config", {})
    n = eval_n or cfg.get("eval_n") or 300
    seed, size = card.get("seed", 0), cfg.get("image_size", 112)
    model, processor = load_model(out, dtype=torch.float32).eval(), load_processor(out)
    rows = naming_rows(seed, max(n, probe_n), size)
    card["naming"] = name_eval(model, processor, rows[:n], batch_size)
    if probe_n:  # 0 skips the probe and keeps the card's earlier one
        card["vision_probe"] = vision_probe(model, processor, rows[:probe_n])
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / CARD_MD).write_text(model_card_markdown(card), encoding="utf-8")
    return {"naming": card["naming"], "vision_probe": card.get("vision_probe")}


def family_box_scores(answers: list[dict[str, Any] | None], rows: list[dict[str, Any]], seed: int = 0) -> dict:
    """Box acc@0.5 per query family next to the random-shape baseline of the same rows:
    ``{family: {"n", "box_acc50", "random_shape_acc50"}}`` (ShapeWorld rows: ``family``, ``gt_bbox``,
    ``shape_boxes``)."""
    from wise_rl.testbed.shapeworld import random_shape_baseline

    out: dict[str, dict[str, Any]] = {}
    for family in sorted({r["family"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["family"] == family]
        sub = [rows[i] for i in idx]
        box = box_scores([answers[i] for i in idx], [r["gt_bbox"] for r in sub])
        out[family] = {"n": len(idx), "box_acc50": box["box_acc50"],
                       "random_shape_acc50": random_shape_baseline(sub, seed=seed)["acc@0.5"]}
    return out
