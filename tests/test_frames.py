"""frames: original ↔ model frame round trips for boxes, points and masks; bad sizes raise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from wise_rl import frames

sizes = st.integers(min_value=8, max_value=4000)
model_sizes = st.sampled_from([112, 420, 448, 840, 1024])


@st.composite
def box_in_image(draw):
    width, height = draw(sizes), draw(sizes)
    x1 = draw(st.integers(0, width - 1))
    x2 = draw(st.integers(x1, width - 1))
    y1 = draw(st.integers(0, height - 1))
    y2 = draw(st.integers(y1, height - 1))
    return (width, height), [x1, y1, x2, y2]


@settings(max_examples=200, deadline=None)
@given(box_in_image(), model_sizes)
def test_bbox_original_model_original_within_one_pixel(case, model_size):
    size, bbox = case
    model = frames.bbox_to_model(bbox, size, model_size)
    assert all(0 <= v <= model_size for v in model)
    np.testing.assert_allclose(frames.bbox_to_original(model, size, model_size), bbox, atol=1e-6)
    # The model answers in integer pixels: rounding in the model frame costs at most half a model pixel,
    # i.e. 0.5 * W / S original pixels — within 1 px whenever the original is at most twice the model frame.
    rounded = [round(v) for v in model]
    back = frames.bbox_to_original(rounded, size, model_size)
    scale = max(size[0], size[1]) / model_size
    assert np.max(np.abs(np.subtract(back, bbox))) <= 0.5 * scale + 1e-9
    if scale <= 2:
        assert np.max(np.abs(np.subtract(back, bbox))) <= 1


@settings(max_examples=200, deadline=None)
@given(sizes, sizes, model_sizes, st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=4))
def test_points_round_trip(width, height, model_size, fractions):
    points = [[fx * (width - 1), fy * (height - 1)] for fx, fy in fractions]
    model = frames.points_to_model(points, (width, height), model_size)
    back = frames.points_to_original(model, (width, height), model_size)
    np.testing.assert_allclose(back, points, atol=1e-6)
    answer = {"bbox": [0, 0, model_size, model_size], "points_1": model[0], "points_2": model[-1]}
    orig = frames.answer_to_original(answer, (width, height), model_size)
    np.testing.assert_allclose(orig["bbox"], [0, 0, width, height], atol=1e-6)
    np.testing.assert_allclose([orig["points_1"], orig["points_2"]], [points[0], points[-1]], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(4, 24), st.integers(0, 2**31 - 1))
def test_blocky_mask_round_trips(fx, fy, model_size, seed):
    """A mask constant on fx×fy blocks survives original → model → original exactly (nearest neighbour)."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(model_size, model_size))
    original = np.kron(cells, np.ones((fy, fx), dtype=np.uint8))  # H = fy·S, W = fx·S
    size = (fx * model_size, fy * model_size)
    model = frames.mask_to_model(original, model_size)
    np.testing.assert_array_equal(model, cells)
    np.testing.assert_array_equal(frames.mask_to_original(model, size), original)


def test_mask_values_are_kept_by_nearest_resizing():
    mask = np.zeros((30, 50), dtype=np.uint8)
    mask[5:20, 10:40] = 1
    mask[0:5, 0:5] = 255
    model = frames.mask_to_model(mask, 100)
    assert model.shape == (100, 100) and set(np.unique(model)) == {0, 1, 255}


def test_image_to_model_is_square_rgb():
    image = Image.new("L", (30, 20), 7)
    out = frames.image_to_model(image, 64)
    assert out.size == (64, 64) and out.mode == "RGB"


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-5, 10)])
def test_non_positive_image_size_raises(size):
    with pytest.raises(ValueError, match="positive"):
        frames.bbox_to_model([0, 0, 1, 1], size, 840)
    with pytest.raises(ValueError, match="positive"):
        frames.points_to_original([[0, 0]], size, 840)


@pytest.mark.parametrize("model_size", [0, -840])
def test_non_positive_model_size_raises(model_size):
    with pytest.raises(ValueError, match="model_size"):
        frames.bbox_to_original([0, 0, 1, 1], (100, 100), model_size)


# ------------------------------------------------------------------------------------------------ Frame values
FRAMES = ["abs112", "abs840", "abs1024", "rel1000"]


@pytest.mark.parametrize("name", FRAMES)
def test_a_frame_is_named_by_its_string(name):
    frame = frames.Frame.parse(name)
    assert str(frame) == name and frames.Frame.parse(str(frame)) == frame
    assert frame.relative == name.startswith("rel")
    assert frames.Frame.parse(840) == frames.Frame.parse("abs840") == frames.Frame.parse("840")


@pytest.mark.parametrize("bad", ["rel840", "abs", "pixels", "abs-3", 0, None, 1.5])
def test_a_bad_frame_name_is_one_line_naming_the_accepted_ones(bad):
    from wise_rl.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        frames.Frame.parse(bad)
    assert "\n" not in str(info.value) and ("abs840" in str(info.value) or "positive" in str(info.value))


@settings(max_examples=150, deadline=None)
@given(box_in_image(), st.sampled_from(FRAMES))
def test_every_frame_round_trips_boxes_and_points_on_non_square_images(case, name):
    size, bbox = case
    frame = frames.Frame.parse(name)
    model = frames.bbox_to_model(bbox, size, frame)
    assert all(0 <= v <= frame.side for v in model)
    np.testing.assert_allclose(frames.bbox_to_original(model, size, frame), bbox, atol=1e-6)
    points = [[bbox[0], bbox[1]], [bbox[2], bbox[3]]]
    np.testing.assert_allclose(frames.points_to_original(frames.points_to_model(points, size, name), size, name),
                               points, atol=1e-6)
    # frames of the same image convert exactly into one another
    other = frames.Frame.parse("rel1000" if not frame.relative else "abs840")
    np.testing.assert_allclose(frames.convert_bbox(model, frame, other), frames.bbox_to_model(bbox, size, other),
                               atol=1e-6)


def test_rel1000_is_relative_to_the_image_side_on_a_non_square_image():
    np.testing.assert_allclose(frames.bbox_to_model([0, 0, 640, 480], (640, 480), "rel1000"), [0, 0, 1000, 1000])
    np.testing.assert_allclose(frames.bbox_to_original([250, 500, 500, 1000], (640, 480), "rel1000"),
                               [160, 240, 320, 480])
    np.testing.assert_allclose(frames.bbox_to_original([210, 420, 420, 840], (640, 480), 840), [160, 240, 320, 480])


def test_the_official_thresholds_are_fractions_of_the_side():
    assert frames.scale_threshold(10, "abs840") == 10
    assert frames.scale_threshold(10, "rel1000") == pytest.approx(11.905, abs=1e-3)
    assert frames.scale_threshold(100, "rel1000") == pytest.approx(119.05, abs=1e-2)
    assert frames.scale_threshold(10, 112) == pytest.approx(1.333, abs=1e-3)


def test_rel1000_shows_the_image_as_given_and_keeps_masks():
    image = Image.new("L", (30, 20), 7)
    assert frames.Frame.parse("rel1000").model_image(image).size == (30, 20)
    assert frames.image_to_model(image, "abs64").size == (64, 64)
    mask = np.zeros((20, 30), dtype=np.uint8)
    assert frames.mask_to_model(mask, "rel1000").shape == (20, 30)


def test_row_frame_reads_the_frame_column_else_model_size():
    from wise_rl.errors import ConfigError

    assert str(frames.row_frame({"frame": "rel1000", "model_size": 840})) == "rel1000"
    assert str(frames.row_frame({"frame": None, "model_size": 112})) == "abs112"
    with pytest.raises(ConfigError, match="no frame"):
        frames.row_frame({"id": "x"})


# ------------------------------------------------------------------------ the frame through rows, rewards, eval
def _schema_rows(n=2, size=112, original=(160, 120)):
    """Sample-schema rows of a 160×120 original shown as a size² image, ground truth in abs{size}."""
    from datasets import Dataset

    from wise_rl.data.schema import sample_features

    mask = np.zeros((size, size), dtype=np.uint8)
    mask[20:40, 30:60] = 1
    cols = {"id": [f"s{i}" for i in range(n)], "image": [Image.new("RGB", (size, size))] * n,
            "query": ["the blue square"] * n, "image_size": [list(original)] * n, "model_size": [size] * n,
            "gt_bbox": [[30.0, 20.0, 59.0, 39.0]] * n, "gt_points": [[[40.0, 29.0], [50.0, 30.0]]] * n,
            "gt_mask": [Image.fromarray(mask, mode="L")] * n, "detailed": ["d"] * n, "concise": ["c"] * n,
            "source": ["test"] * n, "frame": [None] * n}
    return Dataset.from_dict(cols, features=sample_features())


def test_rows_enter_the_requested_frame_once_and_record_it(tmp_path):
    from wise_rl.data.loaders import load_source
    from wise_rl.errors import ConfigError

    source = _schema_rows()
    rel = load_source(source, frame="rel1000")
    k = 1000 / 112
    assert rel["frame"] == ["rel1000"] * 2 and rel[0]["model_size"] == 112
    np.testing.assert_allclose(rel[0]["gt_bbox"], [30 * k, 20 * k, 59 * k, 39 * k], rtol=1e-6)
    np.testing.assert_allclose(rel[0]["gt_points"], [[40 * k, 29 * k], [50 * k, 30 * k]], rtol=1e-6)
    assert load_source(source)["frame"] == ["abs112"] * 2
    # rows written in rel1000 read back as the same ground truth, in whichever frame is asked for
    rel.save_to_disk(str(tmp_path / "rel"))
    again = load_source(tmp_path / "rel")
    np.testing.assert_allclose(again[0]["gt_bbox"], [30, 20, 59, 39], rtol=1e-5)
    assert again[0]["frame"] == "abs112"
    np.testing.assert_allclose(load_source(tmp_path / "rel", frame="rel1000")[0]["gt_bbox"], rel[0]["gt_bbox"],
                               rtol=1e-5)
    big = load_source(source, frame="abs840")  # an absolute frame is the side of the image shown
    assert big[0]["model_size"] == 840 and big[0]["image"].size == (840, 840)
    np.testing.assert_allclose(big[0]["gt_bbox"], [225, 150, 442.5, 292.5], rtol=1e-6)
    with pytest.raises(ConfigError, match="disagree"):
        load_source(source, frame="abs840", model_size=112)


def _completion(answer: dict) -> str:
    """A WISE completion whose answer is written exactly as given (floats kept)."""
    import json

    points = answer["points"]
    body = json.dumps({"bbox": list(answer["bbox"]), "points_1": list(points[0]), "points_2": list(points[1])})
    return f"<think>c</think><answer>{body}</answer><d_think>d</d_think>"


@pytest.mark.parametrize("name", ["abs112", "abs840", "rel1000"])
def test_the_ground_truth_as_answer_scores_one_in_every_frame(name):
    """In every frame the exact ground truth scores bbox IoU, L1 and points 1; the L1 tolerance is the official
    10 px of 840 in that frame's units (11.9 in rel1000)."""
    from rewards import get_reward
    from wise_rl.data.loaders import load_source

    rows = load_source(_schema_rows(1, size=840), frame=name if name != "abs112" else None)
    if name == "abs112":
        rows = load_source(_schema_rows(1, size=112))
    row = rows[0]
    cols = {"gt_bbox": [row["gt_bbox"]], "gt_points": [row["gt_points"]], "frame": [row["frame"]],
            "model_size": [row["model_size"]]}
    exact = _completion({"bbox": row["gt_bbox"], "points": row["gt_points"]})
    for reward in ("bbox_iou", "bbox_l1", "points"):
        assert get_reward(reward)(completions=[exact], **cols) == [1.0], reward
    tolerance = frames.scale_threshold(10, name)
    for shift, expected in ((0.9 * tolerance, 1.0), (1.1 * tolerance, 0.0)):
        box = [round(row["gt_bbox"][0] + shift), *[round(v) for v in row["gt_bbox"][1:]]]
        shifted = _completion({"bbox": box, "points": [[round(v) for v in p] for p in row["gt_points"]]})
        mean_error = abs(box[0] - row["gt_bbox"][0]) / 4 + sum(abs(round(v) - v) for v in row["gt_bbox"][1:]) / 4
        if (mean_error < tolerance) == bool(expected):  # integer rounding can cross the line: score what it is
            assert get_reward("bbox_l1")(completions=[shifted], **cols) == [expected], (name, shift)


def test_eval_metrics_are_the_same_in_every_frame():
    """The ground truth written in the rows' own frame scores the same metrics whichever frame the rows are in."""
    from wise_rl.data.loaders import load_source
    from wise_rl.evaluate import score_predictions

    for size in (112, 840):
        results = {}
        for name in (None, "rel1000"):
            rows = load_source(_schema_rows(2, size=size), with_original_mask=True, frame=name)
            preds = [{"id": r["id"], "completion": _completion({"bbox": r["gt_bbox"], "points": r["gt_points"]})}
                     for r in rows]
            metrics, _ = score_predictions(rows, preds, progress=False)
            results[rows[0]["frame"]] = (metrics["gIoU"], metrics["cIoU"], metrics["acc50"])
        assert set(results) == {f"abs{size}", "rel1000"}
        assert results[f"abs{size}"] == pytest.approx(results["rel1000"], abs=1e-9), results
        assert results["rel1000"][0] > 0.5


def test_training_rows_take_the_family_frame(tmp_path):
    from wise_rl import training
    from wise_rl.models import info
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model

    qwen3 = build_tiny_model(tmp_path / "q3", family="qwen3_vl")
    qwen25 = build_tiny_model(tmp_path / "q25", family="qwen2_5_vl")
    args = training.GRPOScriptArguments(dataset="shapeworld")
    assert training.training_frame(args, qwen3) == "rel1000"
    assert training.training_frame(args, qwen25) is None  # absolute: the rows' own square
    assert training.training_frame(training.GRPOScriptArguments(dataset="x", frame="abs840"), qwen3) == "abs840"
    rows = training.rows_in_frame(_schema_rows(1), "rel1000")
    assert training.dataset_frame(rows) == "rel1000" and rows[0]["gt_bbox"][0] == pytest.approx(30 * 1000 / 112)
    # the model answers in: wise_rl.json's frame, else the family's, else the processor's square
    assert str(info.resolve_frame(qwen3)) == "rel1000"
    assert str(info.resolve_frame(qwen25, square=112)) == "abs112"
    info.write(qwen3, info.training_record(["wise-train"], "grpo", frame="abs840"))
    assert str(info.resolve_frame(qwen3)) == "abs840"


def test_a_frame_flag_that_contradicts_the_trained_frame_is_said(tmp_path, caplog):
    from wise_rl.models import info

    model = tmp_path / "m"
    info.write(model, info.training_record(["wise-train"], "grpo", frame="abs840"))
    with caplog.at_level("WARNING", logger=info.logger.name):
        assert str(info.resolve_frame(model, "abs840")) == "abs840"
    assert caplog.text == ""  # the same frame: nothing to say
    with caplog.at_level("WARNING", logger=info.logger.name):
        assert str(info.resolve_frame(model, "rel1000")) == "rel1000"  # the flag wins, and is said to differ
    assert "rel1000 asked for, but the model was trained to answer in abs840" in caplog.text
