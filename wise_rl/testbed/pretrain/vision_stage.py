"""Vision stage of the ShapeWorld base: dense supervision of the vision tower before any language is trained.

Real VLMs pre-train their vision encoder on its own before aligning it to the language model; this stage does the
same for the testbed's tower. Each merged vision token (a ``patch_size · merge_size`` = 28 px cell at the default
processor, row-major as the processor orders them) gets three linear heads on the tower's output
(``out_hidden_size`` features):

    colour: softmax over the 6 ShapeWorld colours + "none"   (cross-entropy)
    kind:   softmax over the 5 kinds + "none"                 (cross-entropy)
    box:    the covering shape's box / image_size, 4 values   (L1, cells with a shape only)

where a cell's label is the shape covering most of its pixels (at least ``min_pixels``; fewer: "none"). Loss =
CE(colour) + CE(kind) + ``box_weight`` · L1(box), averaged over the cells, plus
``keep_weight`` · ‖f − f₀‖² / ‖f₀‖² where f₀ are the merged tokens of a frozen copy of the tower as it came: a
tower that already feeds a grounding language model keeps the features that model reads (where things are) and
adds what it lacked (colour, kind) instead of replacing them, so the language model does not relearn localisation. No language model runs, so a step costs
a few tens of milliseconds; scenes are fresh at every step (:func:`wise_rl.testbed.shapeworld.scenes.render_scene` on the
``stream`` split's rng, rendered in the collator), so nothing is memorised.

Training runs through ``transformers.Trainer`` on a small ``nn.Module`` (:class:`VisionHeads`) that holds the
tower, the merger and the heads; afterwards the tower's weights go back into the full model and the heads are
dropped. Precision follows :func:`wise_rl.training.precision.resolve_bf16` (fp32 on a CPU without native bf16).
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class VisionStageConfig:
    """Settings of the vision stage (``wise-rl pretrain-base --vision-steps N …``)."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    box_weight: float = 1.0
    keep_weight: float = 0.0  # weight of the feature-keeping term (0: none)
    min_pixels: int = 20
    seed: int = 0
    image_size: int = 112
    logging_steps: int = 50
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "logging_steps", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--vision-{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--vision-lr must be > 0, got {self.lr}")
        if self.box_weight < 0:
            raise ValueError(f"--vision-box-weight must be >= 0, got {self.box_weight}")


def cell_px(processor) -> int:
    """Side in px of the image cell one merged vision token covers (``patch_size · merge_size``)."""
    return processor.image_processor.patch_size * processor.image_processor.merge_size


def cell_pixel_counts(mask: np.ndarray, cell: int) -> np.ndarray:
    """``(G_h · G_w,)`` nonzero pixels of the H×W ``mask`` in each ``cell``-px cell, row-major (the processor's order
    of merged tokens); a remainder of fewer than ``cell`` rows or columns is left out."""
    mask = np.asarray(mask) > 0
    grid_h, grid_w = mask.shape[0] // cell, mask.shape[1] // cell
    return mask[:grid_h * cell, :grid_w * cell].reshape(grid_h, cell, grid_w, cell).sum((1, 3)).ravel()


def cell_targets(scene, cell: int, min_pixels: int = 20) -> dict[str, np.ndarray]:
    """Per-cell labels of one scene, row-major over the ``(S // cell)²`` merged tokens.

    Returns ``colour`` and ``kind`` (int64, shape ``(G²,)``; index into ``COLOURS`` / ``KINDS``, or
    ``len(COLOURS)`` / ``len(KINDS)`` for "none") and ``box`` (float32 ``(G², 4)``, the covering shape's
    pixel-inclusive box / image size; zeros where none)."""
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    size = scene.image_size
    grid = size // cell
    colours, kinds = list(COLOURS), list(KINDS)
    colour = np.full(grid * grid, len(colours), dtype=np.int64)
    kind = np.full(grid * grid, len(kinds), dtype=np.int64)
    box = np.zeros((grid * grid, 4), dtype=np.float32)
    if not scene.shapes:
        return {"colour": colour, "kind": kind, "box": box}
    # pixels of each shape in each cell: (n_shapes, G²); shapes do not overlap
    counts = np.stack([cell_pixel_counts(shape.mask(size), cell) for shape in scene.shapes])
    best = counts.argmax(0)
    for t in np.flatnonzero(counts.max(0) >= min_pixels):
        shape = scene.shapes[int(best[t])]
        colour[t], kind[t] = colours.index(shape.colour), kinds.index(shape.kind)
        box[t] = np.asarray(shape.box, dtype=np.float32) / size
    return {"colour": colour, "kind": kind, "box": box}


class SceneCollator:
    """Renders ``len(indices)`` fresh scenes (stream split of ``seed``) and returns the tower's inputs and the
    per-cell targets: ``pixel_values`` (B·P, C), ``image_grid_thw`` (B, 3), ``colour``/``kind`` (B, G²),
    ``box`` (B, G², 4)."""

    def __init__(self, processor, seed: int, image_size: int, min_pixels: int = 20):
        self.image_processor = processor.image_processor
        self.cell = cell_px(processor)
        self.seed, self.image_size, self.min_pixels = seed, image_size, min_pixels

    def scenes(self, indices):
        from wise_rl.testbed.shapeworld import _rng_for, render_scene

        return [render_scene(_rng_for(self.seed, "stream", int(i)), image_size=self.image_size) for i in indices]

    def __call__(self, indices) -> dict[str, Any]:
        scenes = self.scenes(indices)
        enc = self.image_processor(images=[s.image for s in scenes], return_tensors="pt")
        targets = [cell_targets(s, self.cell, self.min_pixels) for s in scenes]
        return {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"],
                **{k: torch.as_tensor(np.stack([t[k] for t in targets])) for k in ("colour", "kind", "box")}}


class VisionHeads(torch.nn.Module):
    """The vision tower (with its merger) of a Qwen2.5-VL model and three per-token heads; ``forward`` returns
    ``{"loss", "colour_logits", "kind_logits", "box"}`` as ``transformers.Trainer`` expects."""

    def __init__(self, model, n_colours: int, n_kinds: int, box_weight: float = 1.0, keep_weight: float = 0.0):
        super().__init__()
        self.visual = model.model.visual  # the tower and its merger: the only part of the model trained here
        dim = model.config.vision_config.out_hidden_size
        self.colour_head = torch.nn.Linear(dim, n_colours + 1)
        self.kind_head = torch.nn.Linear(dim, n_kinds + 1)
        self.box_head = torch.nn.Linear(dim, 4)
        self.box_weight = box_weight
        self.keep_weight = keep_weight
        # A frozen copy of the tower as it came: the features the language model already reads. Not a submodule,
        # so the optimizer and the saved weights never see it.
        self._reference = [copy.deepcopy(self.visual).eval().requires_grad_(False)] if keep_weight else []

    def features(self, pixel_values, image_grid_thw):
        """(B, G², out_hidden_size): the merged tokens the language model would receive."""
        out = self.visual(pixel_values.type(self.visual.dtype), grid_thw=image_grid_thw)
        return out.pooler_output.reshape(image_grid_thw.shape[0], -1, self.colour_head.in_features)

    def forward(self, pixel_values, image_grid_thw, colour=None, kind=None, box=None):
        feats = self.features(pixel_values, image_grid_thw)
        out = {"colour_logits": self.colour_head(feats), "kind_logits": self.kind_head(feats),
               "box": self.box_head(feats)}
        if colour is not None:
            ce = torch.nn.functional.cross_entropy
            loss = ce(out["colour_logits"].flatten(0, 1), colour.flatten()) + \
                ce(out["kind_logits"].flatten(0, 1), kind.flatten())
            has_shape = colour < self.colour_head.out_features - 1
            if self.box_weight and has_shape.any():
                loss = loss + self.box_weight * torch.nn.functional.l1_loss(out["box"][has_shape],
                                                                            box[has_shape])
            if self._reference:
                reference = self._reference[0]
                if next(reference.parameters()).device != feats.device:  # not a submodule: .to() skipped it
                    reference.to(feats.device)
                with torch.no_grad():
                    ref = reference(pixel_values.type(self.visual.dtype), grid_thw=image_grid_thw)
                    ref = ref.pooler_output.reshape(feats.shape)
                # scale-free: squared error relative to the reference features' mean square
                loss = loss + self.keep_weight * ((feats - ref) ** 2).mean() / (ref ** 2).mean().clamp_min(1e-8)
            out["loss"] = loss
        return out



class SceneIndices(torch.utils.data.IterableDataset):
    """An endless stream of scene indices ``start, start + 1, …`` (the collator renders the scenes)."""

    def __init__(self, start: int = 0):
        self.start = start

    def __iter__(self):
        return itertools.count(self.start)


def train_vision(model, processor, config: VisionStageConfig, output_dir, bf16: bool = False) -> dict[str, Any]:
    """Train ``model``'s vision tower in place (``config.steps`` optimizer steps); returns ``{"history": [{step,
    loss}], "train_s", "steps", "samples"}``. The language model is untouched (no gradients reach it)."""
    import time

    from transformers import Trainer, TrainerCallback, TrainingArguments

    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    config.validate()
    heads = VisionHeads(model, len(COLOURS), len(KINDS), config.box_weight, config.keep_weight)
    history: list[dict[str, Any]] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                history.append({"step": state.global_step, "loss": logs["loss"]})

    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr, lr_scheduler_type="cosine", warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay, max_grad_norm=1.0, logging_steps=config.logging_steps,
        # one worker renders and processes the next batch while this process trains on the current one
        save_strategy="no", report_to=[], remove_unused_columns=False,
        dataloader_num_workers=1 if (os.cpu_count() or 1) > 1 else 0,
        accelerator_config={"dispatch_batches": False}, seed=config.seed, bf16=bf16,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=not config.progress,
    )
    trainer = Trainer(model=heads, args=args, train_dataset=SceneIndices(),
                      data_collator=SceneCollator(processor, config.seed, config.image_size, config.min_pixels),
                      callbacks=[Record()])
    t0 = time.perf_counter()
    trainer.train()
    return {"history": history, "train_s": round(time.perf_counter() - t0, 1), "steps": trainer.state.global_step,
            "samples": trainer.state.global_step * config.batch_size, "heads": heads}


def head_accuracy(heads, processor, seed: int, n: int = 400, image_size: int = 112, batch_size: int = 100) -> dict:
    """Accuracy of the trained heads per shape at its centre cell on ``n`` held-out scenes (test split of
    ``seed``): ``{"colour_acc", "kind_acc", "n_shapes"}``."""
    from wise_rl.testbed.shapeworld import COLOURS, KINDS, _rng_for, render_scene

    collate = SceneCollator(processor, seed, image_size)
    cell, grid = collate.cell, image_size // collate.cell
    hits_c = hits_k = total = 0
    heads.eval()
    with torch.no_grad():
        for s in range(0, n, batch_size):
            scenes = [render_scene(_rng_for(seed, "test", i), image_size=image_size)
                      for i in range(s, min(n, s + batch_size))]
            enc = collate.image_processor(images=[sc.image for sc in scenes], return_tensors="pt")
            out = heads(enc["pixel_values"], enc["image_grid_thw"])
            pc, pk = out["colour_logits"].argmax(-1), out["kind_logits"].argmax(-1)
            for b, sc in enumerate(scenes):
                for shape in sc.shapes:
                    cx, cy = shape.centre
                    tok = int(cy) // cell * grid + int(cx) // cell
                    total += 1
                    hits_c += int(pc[b, tok] == list(COLOURS).index(shape.colour))
                    hits_k += int(pk[b, tok] == list(KINDS).index(shape.kind))
    heads.train()
    return {"colour_acc": hits_c / total, "kind_acc": hits_k / total, "n_shapes": total}
