"""Mask decoders: the pixel-inclusive box rasteriser and SAM2 on a tiny random checkpoint."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from wise_rl.masks import (
    BoxDecoder,
    MaskDecoder,
    Sam2Decoder,
    get_mask_decoder,
    rasterize_bbox,
)
from wise_rl.testbed.fixtures.tiny_sam2 import build_tiny_sam2

ANSWER = {"bbox": [2, 3, 5, 7], "points_1": [3, 4], "points_2": [4, 6]}


def test_box_decoder_is_pixel_inclusive_and_clipped():
    mask = BoxDecoder().decode(Image.new("RGB", (10, 8)), ANSWER)
    assert mask.shape == (8, 10) and mask.dtype == np.uint8
    assert mask.sum() == (5 - 2 + 1) * (7 - 3 + 1)  # the official area
    assert mask[3:8, 2:6].all() and mask.sum() == mask[3:8, 2:6].sum()
    clipped = rasterize_bbox([-5, -5, 100, 2.4], (10, 8))  # rounded, clipped to the image
    assert clipped.sum() == 10 * 3
    assert rasterize_bbox([5, 5, 2, 2], (10, 8)).sum() == 0  # inverted
    assert rasterize_bbox([float("nan"), 0, 3, 3], (10, 8)).sum() == 0
    assert rasterize_bbox([20, 20, 30, 30], (10, 8)).sum() == 0  # outside
    # a (W, H) tuple stands in for the image
    assert (BoxDecoder().decode((10, 8), ANSWER) == mask).all()


def test_get_mask_decoder():
    assert isinstance(get_mask_decoder("box"), BoxDecoder)
    assert isinstance(get_mask_decoder("box"), MaskDecoder)
    with pytest.raises(ValueError, match="unknown mask decoder 'sam'; known: box, sam2"):
        get_mask_decoder("sam")
    with pytest.raises(TypeError, match="mask decoder 'sam2'"):
        get_mask_decoder("sam2")  # path is required
    with pytest.raises(FileNotFoundError, match="no SAM2 model folder"):
        Sam2Decoder("/nonexistent/sam2")


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    return build_tiny_sam2(tmp_path_factory.mktemp("sam2"), seed=0)


def test_sam2_decoder_on_a_tiny_random_checkpoint(tiny_sam2):
    from transformers import Sam2Model

    assert (tiny_sam2 / "model.safetensors").is_file()
    assert Sam2Model.from_pretrained(tiny_sam2).config.prompt_encoder_config.image_size == 128
    decoder = get_mask_decoder("sam2", path=str(tiny_sam2), device="cpu")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)) for _ in range(2)]
    answers = [ANSWER, {"bbox": [0, 0, 39, 29], "points_1": [10, 10], "points_2": [30, 20]}]
    masks = decoder.decode_batch([images[0], images[1], images[0]], [answers[0], answers[1], answers[0]])
    for m in masks:
        assert m.shape == (30, 40) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert (masks[0] == masks[2]).all()  # same image and prompt → same mask (shared image embedding)
    assert (decoder.decode(images[0], answers[0]) == masks[0]).all()  # batched == single
    # pickling drops the weights; the clone reloads them and agrees
    clone = pickle.loads(pickle.dumps(decoder))
    assert clone._model is None
    assert (clone.decode(images[0], answers[0]) == masks[0]).all()


def test_sam2_prompts_are_scaled_to_the_input_frame(tiny_sam2):
    decoder = Sam2Decoder(tiny_sam2, device="cpu")
    decoder._load()
    points, box = decoder._prompts({"bbox": [10, 20, 30, 40], "points_1": [10, 20], "points_2": [30, 40]},
                                   (64, 256))
    assert box == [20.0, 10.0, 60.0, 20.0]  # x × 128/64, y × 128/256
    assert points == [[20.0, 10.0], [60.0, 20.0]]
    pixels = decoder._pixels(Image.new("RGB", (64, 256), (255, 255, 255)))
    assert pixels.shape == (3, 128, 128)
    assert pixels[0, 0, 0] == pytest.approx((1 - 0.485) / 0.229)


def test_sam2_point_prompts_change_the_mask(tiny_sam2):
    """The point path is live: the same box with other points gives other logits (random weights)."""
    import torch

    decoder = Sam2Decoder(tiny_sam2, device="cpu", multimask=False)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    model = decoder._load()
    base = {"bbox": [8, 8, 56, 56], "points_1": [16, 16], "points_2": [20, 20]}
    moved = {"bbox": [8, 8, 56, 56], "points_1": [50, 50], "points_2": [52, 40]}
    outs = []
    with torch.inference_mode():
        for ans in (base, moved):
            pts, box = decoder._prompts(ans, image.size)
            out = model(pixel_values=torch.from_numpy(decoder._pixels(image))[None],
                        input_points=torch.tensor([[pts]]), input_labels=torch.ones(1, 1, 2, dtype=torch.int32),
                        input_boxes=torch.tensor([[box]]), multimask_output=False)
            outs.append(out.pred_masks)
    assert not torch.allclose(outs[0], outs[1])
    assert decoder.decode(image, moved).shape == (64, 64)


def test_sam2_reuses_the_previous_calls_masks(tiny_sam2):
    decoder = Sam2Decoder(tiny_sam2, device="cpu", batch_size=2)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    other = {"bbox": [1, 1, 20, 20], "points_1": [5, 5], "points_2": [9, 9]}
    first = decoder.decode_batch([image, image, image], [ANSWER, other, ANSWER])
    assert decoder.forward_calls == 2  # 3 prompts in chunks of 2, one image embedding
    again = decoder.decode_batch([image, image], [other, ANSWER])
    assert decoder.forward_calls == 2  # all memoised
    assert (again[0] == first[1]).all() and (again[1] == first[0]).all()
    decoder.decode_batch([image], [{"bbox": [0, 0, 5, 5], "points_1": [1, 1], "points_2": [2, 2]}])
    assert decoder.forward_calls == 3
