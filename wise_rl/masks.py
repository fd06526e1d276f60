"""Mask decoders: turn a predicted answer (bbox + two points) into a binary mask.

A decoder implements the :class:`MaskDecoder` protocol::

    decode(image, answer) -> np.ndarray            # H×W uint8, 1 = predicted target, 0 = background
    decode_batch(images, answers) -> list[np.ndarray]

``answer`` is ``{"bbox": [x1, y1, x2, y2], "points_1": [x, y], "points_2": [x, y]}`` in the pixel frame of
``image`` itself (convert with :mod:`wise_rl.frames` first when the answer is in the model frame and the image is
the original).

- ``box`` (:class:`BoxDecoder`): rasterise the pixel-inclusive bbox, clipped to the image. No weights.
- ``sam2`` (:class:`Sam2Decoder`): transformers ``Sam2Model`` prompted with the box and both points as positive
  points; the highest-scoring of the multimask outputs is kept. Preprocessing is done by hand on the CPU (no
  torchvision): resize to the model's square input size, ``/255``, ImageNet mean/std; the box corners and the points
  are scaled by ``S/W`` and ``S/H``. The low-resolution logits are upsampled bilinearly to the image size and
  thresholded at 0. The image embedding is computed once per distinct image of a batch (GRPO scores several
  completions of the same image), and the masks of the previous call are reused for identical (image, prompt)
  pairs (a mask-IoU gate and the ``mask_iou`` reward decode the same batch one after the other).

>>> from PIL import Image
>>> m = BoxDecoder().decode(Image.new("RGB", (8, 6)), {"bbox": [1, 2, 3, 4], "points_1": [2, 3], "points_2": [2, 3]})
>>> int(m.sum()), m.shape  # 3 columns × 3 rows, pixel-inclusive
(9, (6, 8))
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class MaskDecoder(Protocol):
    """Anything with ``decode(image, answer)`` and ``decode_batch(images, answers)`` returning H×W uint8 0/1."""

    def decode(self, image: Image.Image, answer: dict[str, Any]) -> np.ndarray: ...

    def decode_batch(self, images: Sequence[Image.Image], answers: Sequence[dict[str, Any]]) -> list[np.ndarray]: ...


def _image_size(image: Any) -> tuple[int, int]:
    """(W, H) of a PIL image, an H×W(×C) array or a ``(W, H)`` tuple."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray):
        return int(image.shape[1]), int(image.shape[0])
    if isinstance(image, (tuple, list)) and len(image) == 2:
        return int(image[0]), int(image[1])
    raise TypeError(f"expected a PIL image, an array or a (W, H) size, got {type(image).__name__}")


def rasterize_bbox(bbox: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """H×W uint8 mask of the pixel-inclusive box ``[x1, y1, x2, y2]`` (coordinates rounded, clipped to the image).

    Columns ``round(x1)..round(x2)`` and rows ``round(y1)..round(y2)`` are set, both ends included, so
    ``[0, 0, 9, 9]`` covers 100 pixels, matching the official area ``(x2 - x1 + 1)(y2 - y1 + 1)``. An inverted or
    non-finite box, or one entirely outside the image, gives an empty mask.
    """
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    values = [float(v) for v in bbox]
    if len(values) != 4 or not all(np.isfinite(values)):
        return mask
    x1, y1, x2, y2 = (int(round(max(-1.0, min(v, 1e9)))) for v in values)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, width - 1), min(y2, height - 1)
    if x1 <= x2 and y1 <= y2:
        mask[y1 : y2 + 1, x1 : x2 + 1] = 1
    return mask


class BoxDecoder:
    """The bbox itself as the mask (no model). ``image`` only supplies the size; a ``(W, H)`` tuple works too."""

    name = "box"

    def decode(self, image: Any, answer: dict[str, Any]) -> np.ndarray:
        return rasterize_bbox(answer["bbox"], _image_size(image))

    def decode_batch(self, images: Sequence[Any], answers: Sequence[dict[str, Any]]) -> list[np.ndarray]:
        if len(images) != len(answers):
            raise ValueError(f"decode_batch got {len(images)} images but {len(answers)} answers")
        return [self.decode(image, answer) for image, answer in zip(images, answers)]


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return "cpu"


class Sam2Decoder:
    """SAM2 from any folder saved by ``Sam2Model.save_pretrained`` (weights loaded lazily, once).

    Args:
        path: the model folder (e.g. a local copy of ``facebook/sam2-hiera-large``).
        device: ``"cpu"``, ``"cuda"``…; default: the current CUDA device when there is one, else CPU.
        batch_size: completions per prompt-decoder forward.
        multimask: ask for the 3 candidate masks and keep the highest predicted IoU (the WISE protocol); False takes
            SAM2's single-mask output.
    """

    name = "sam2"

    def __init__(self, path: str | os.PathLike, device: str | None = None, batch_size: int = 16,
                 multimask: bool = True):
        self.path = str(path)
        if not Path(self.path, "config.json").is_file():
            raise FileNotFoundError(f"no SAM2 model folder at {self.path!r} (config.json missing)")
        self.device = device
        self.batch_size = int(batch_size)
        self.multimask = bool(multimask)
        self._model = None
        self._memo: dict = {}  # the previous call's masks: a gate and a reward decode the same batch in turn
        self.forward_calls = 0
        self._input_size: int | None = None
        self._mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        self._std = np.asarray(IMAGENET_STD, dtype=np.float32)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None  # reloaded lazily in the other process
        state["_memo"] = {}
        return state

    def __repr__(self) -> str:
        return f"Sam2Decoder(path={self.path!r}, device={self.device!r})"

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self):
        """Load the weights now (a training run calls this before its first step); returns the model."""
        return self._load()

    def _load(self):
        if self._model is not None:
            return self._model
        from transformers import Sam2Model

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        device = self.device or _default_device()
        model = Sam2Model.from_pretrained(self.path, trust_remote_code=False)
        model.to(device).eval()
        self._input_size = int(model.config.prompt_encoder_config.image_size)
        pre = Path(self.path, "preprocessor_config.json")
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            self._mean = np.asarray(cfg.get("image_mean", IMAGENET_MEAN), dtype=np.float32)
            self._std = np.asarray(cfg.get("image_std", IMAGENET_STD), dtype=np.float32)
            size = cfg.get("size") or {}
            if isinstance(size, dict) and size.get("height") and size.get("height") != self._input_size:
                raise ValueError(
                    f"{pre}: size {size} disagrees with the prompt encoder's image_size {self._input_size}"
                )
        self._model = model
        return model

    # -- preprocessing ---------------------------------------------------------------------------------------
    def _pixels(self, image: Image.Image) -> np.ndarray:
        """3×S×S float32: resized (bilinear), /255, ImageNet-normalised."""
        s = self._input_size
        arr = np.asarray(image.convert("RGB").resize((s, s), Image.BILINEAR), dtype=np.float32) / 255.0
        arr = (arr - self._mean) / self._std
        return arr.transpose(2, 0, 1)

    def _prompts(self, answer: dict[str, Any], size: tuple[int, int]) -> tuple[list[list[float]], list[float]]:
        """Points and box scaled from the image frame (W, H) to the S×S input frame."""
        width, height = size
        sx, sy = self._input_size / width, self._input_size / height
        pts = [[float(answer[k][0]) * sx, float(answer[k][1]) * sy] for k in ("points_1", "points_2")]
        x1, y1, x2, y2 = (float(v) for v in answer["bbox"])
        return pts, [x1 * sx, y1 * sy, x2 * sx, y2 * sy]

    # -- decoding --------------------------------------------------------------------------------------------
    def decode(self, image: Image.Image, answer: dict[str, Any]) -> np.ndarray:
        return self.decode_batch([image], [answer])[0]

    def decode_batch(self, images: Sequence[Image.Image], answers: Sequence[dict[str, Any]]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        if len(images) != len(answers):
            raise ValueError(f"decode_batch got {len(images)} images but {len(answers)} answers")
        if not images:
            return []
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise TypeError(f"Sam2Decoder needs PIL images; item {i} is {type(image).__name__}")
        model = self._load()
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype

        # One image embedding per distinct image (several completions of a prompt share it).
        keys = [(image.size, hashlib.blake2b(image.convert("RGB").tobytes(), digest_size=16).digest())
                for image in images]
        prompts = [self._prompts(answer, image.size) for answer, image in zip(answers, images)]
        memo_keys = [(k, json.dumps(p)) for k, p in zip(keys, prompts)]
        out: list[np.ndarray | None] = [self._memo.get(k) for k in memo_keys]
        todo = [i for i, m in enumerate(out) if m is None]
        unique: dict = {}
        for i in todo:
            unique.setdefault(keys[i], images[i])
        order = list(unique)
        if todo:
            with torch.inference_mode():
                pixels = torch.from_numpy(np.stack([self._pixels(unique[k]) for k in order])).to(device, dtype)
                embeddings = []
                for start in range(0, len(order), self.batch_size):
                    embeddings.append(model.get_image_embeddings(pixels[start : start + self.batch_size]))
                levels = [torch.cat([e[level] for e in embeddings]) for level in range(len(embeddings[0]))]
                index_of = {k: i for i, k in enumerate(order)}
                for start in range(0, len(todo), self.batch_size):
                    chunk = todo[start : start + self.batch_size]
                    idx = torch.tensor([index_of[keys[i]] for i in chunk], device=device)
                    input_points = torch.tensor([prompts[i][0] for i in chunk], dtype=dtype, device=device)[:, None]
                    input_labels = torch.ones(input_points.shape[:3], dtype=torch.int32, device=device)
                    input_boxes = torch.tensor([prompts[i][1] for i in chunk], dtype=dtype, device=device)[:, None]
                    self.forward_calls += 1
                    result = model(
                        image_embeddings=[level[idx] for level in levels],
                        input_points=input_points,  # (B, 1, 2, 2): both points, positive
                        input_labels=input_labels,
                        input_boxes=input_boxes,  # (B, 1, 4)
                        multimask_output=self.multimask,
                    )
                    logits = result.pred_masks[:, 0]  # (B, K, h, w)
                    best = result.iou_scores[:, 0].argmax(dim=-1)  # highest predicted IoU
                    chosen = logits[torch.arange(len(chunk), device=device), best][:, None].float()
                    for j, i in enumerate(chunk):
                        width, height = images[i].size
                        up = F.interpolate(chosen[j : j + 1], size=(height, width), mode="bilinear",
                                           align_corners=False)
                        out[i] = (up[0, 0] > 0).to(torch.uint8).cpu().numpy()
        self._memo = dict(zip(memo_keys, out))
        return out


DECODERS = {"box": BoxDecoder, "sam2": Sam2Decoder}


def get_mask_decoder(name: str | MaskDecoder = "box", **options) -> MaskDecoder:
    """A decoder by name (``box`` | ``sam2``) with its options (``sam2`` needs ``path=``), or a decoder object as is."""
    if not isinstance(name, str):
        if options:
            raise TypeError("options cannot be given together with a decoder object")
        if not isinstance(name, MaskDecoder):
            raise TypeError(f"{type(name).__name__} is not a mask decoder (needs decode and decode_batch)")
        return name
    if name not in DECODERS:
        raise ValueError(f"unknown mask decoder {name!r}; known: {', '.join(sorted(DECODERS))}")
    try:
        return DECODERS[name](**options)
    except TypeError as e:
        raise TypeError(f"mask decoder {name!r}: {e}") from None
