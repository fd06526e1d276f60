"""ShapeWorld: determinism, exact masks/boxes/points, unique answers (re-resolved independently), rationales,
saved datasets, held-out test split, baselines and the ``wise-rl synth`` command."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from wise_rl.data.geometry import inscribed_circle_points, mask_bbox
from wise_rl.data.schema import SAMPLE_COLUMNS, as_mask_array
from wise_rl.metrics import box_iou
from wise_rl.testbed.shapeworld import (
    COLOURS,
    CORNERS,
    KINDS,
    centre_box_baseline,
    describe_scene,
    generate_dataset,
    iter_samples,
    make_sample,
    name_shape,
    random_shape_baseline,
    render_scene,
)

_WORDS = {"no": 0, "three": 3, "four": 4, "five": 5, "six": 6}


def _samples(n: int, seed: int = 123):
    rng = np.random.default_rng(seed)
    return [make_sample(rng) for _ in range(n)]


# ------------------------------------------------------------------------------------------------------------
# An independent resolver: reads the query text and the scene's shape attributes, measures areas and centres
# from the per-shape masks, and returns every shape index that satisfies the query.
# ------------------------------------------------------------------------------------------------------------
def _facts(scene):
    out = []
    for i, s in enumerate(scene.shapes):
        m = scene.mask(i)
        ys, xs = np.nonzero(m)
        out.append(
            {"kind": s.kind, "colour": s.colour, "area": int(m.sum()),
             "cx": (xs.min() + xs.max()) / 2, "cy": (ys.min() + ys.max()) / 2}
        )
    return out


def _filter(facts, noun):
    """'shape' → all; '<colour> shape' → that colour; '<colour> <kind>' → both; '<kind>' → that kind."""
    words = noun.split()
    idx = list(range(len(facts)))
    if words[0] in COLOURS:
        idx = [i for i in idx if facts[i]["colour"] == words[0]]
        words = words[1:]
    if words and words[0] in KINDS:
        idx = [i for i in idx if facts[i]["kind"] == words[0]]
    return idx


def _extreme(values: dict[int, float], largest: bool) -> list[int]:
    best = max(values.values()) if largest else min(values.values())
    return [i for i, v in values.items() if v == best]


def _resolve(query: str, facts) -> list[int] | None:
    """Indices matching the query, or None for a phrasing this tiny resolver does not cover."""
    if m := re.fullmatch(r"the (largest|biggest|smallest) (.+)", query):
        members = _filter(facts, m[2])
        return _extreme({i: facts[i]["area"] for i in members}, m[1] != "smallest")
    if m := re.fullmatch(r"the (topmost|bottommost|leftmost|rightmost) (.+)", query):
        members = _filter(facts, m[2])
        key = "cy" if m[1] in ("topmost", "bottommost") else "cx"
        return _extreme({i: facts[i][key] for i in members}, m[1] in ("bottommost", "rightmost"))
    if m := re.fullmatch(r"the shape with the (most|fewest) (corners|sides)", query):
        return _extreme({i: CORNERS[f["kind"]] for i, f in enumerate(facts)}, m[1] == "most")
    if m := re.fullmatch(r"the shape with (?:exactly )?(no|three|four|five|six) (?:corners|sides)", query):
        return [i for i, f in enumerate(facts) if CORNERS[f["kind"]] == _WORDS[m[1]]]
    if m := re.fullmatch(r"the only shape that is not (?:an? )?(\w+)", query):
        key = "colour" if m[1] in COLOURS else "kind"
        return [i for i, f in enumerate(facts) if f[key] != m[1]]
    if m := re.fullmatch(r"the shape whose (colour|kind) differs from all the others|the odd one out by (colour|kind)",
                         query):
        key = m[1] or m[2]
        return [i for i, f in enumerate(facts)
                if all(g[key] != f[key] for j, g in enumerate(facts) if j != i)
                and len({g[key] for j, g in enumerate(facts) if j != i}) == 1]
    if m := re.fullmatch(r"the shape to the (left|right) of the (.+)", query):
        (r,) = _filter(facts, m[2])
        sign = 1 if m[1] == "left" else -1
        return [i for i, f in enumerate(facts) if i != r and sign * (facts[r]["cx"] - f["cx"]) > 0]
    if m := re.fullmatch(r"the shape (above|below) the (.+)", query):
        (r,) = _filter(facts, m[2])
        sign = 1 if m[1] == "above" else -1
        return [i for i, f in enumerate(facts) if i != r and sign * (facts[r]["cy"] - f["cy"]) > 0]
    if m := re.fullmatch(r"the (.+)", query):
        if "shape with" in query or "closest" in query or "nearest" in query:
            return None
        return _filter(facts, m[1])
    return None


# ------------------------------------------------------------------------------------------------------------
def test_render_scene_masks_agree_with_the_image():
    rng = np.random.default_rng(0)
    scene = render_scene(rng, kinds=["circle", "triangle", "hexagon"], colours=["red", "red", "blue"], sizes=[30, 20, 14])
    img = np.asarray(scene.image)
    assert scene.image.mode == "RGB" and scene.image.size == (112, 112)
    masks = scene.masks
    assert [s.kind for s in scene.shapes] == ["circle", "triangle", "hexagon"]
    union = np.zeros((112, 112), dtype=int)
    for s, m in zip(scene.shapes, masks):
        assert (img[m.astype(bool)] == COLOURS[s.colour]).all()
        assert mask_bbox(m) == [float(v) for v in s.box]
        assert int(m.sum()) == s.area
        ext = max(s.box[2] - s.box[0], s.box[3] - s.box[1]) + 1
        assert ext in (s.size, s.size - 1)  # drawn in a size×size box
        union += m
    assert union.max() == 1  # non-overlapping
    # Boxes at least the margin apart.
    b = [s.box for s in scene.shapes]
    for i in range(3):
        for j in range(i + 1, 3):
            gap_x = max(b[j][0] - b[i][2], b[i][0] - b[j][2])
            gap_y = max(b[j][1] - b[i][3], b[i][1] - b[j][3])
            assert max(gap_x, gap_y) > 3
    # Off-shape pixels are background: the gradient rises left→right in red and top→bottom in green.
    bg = img[union == 0]
    palette = np.asarray(list(COLOURS.values()))
    assert not (bg[:, None, :] == palette[None]).all(-1).any()
    assert img[0, 0, 0] < img[0, 111, 0] and img[0, 0, 1] < img[111, 0, 1]
    flat = render_scene(np.random.default_rng(0), kinds=["square"], colours=["green"], sizes=[20], gradient=0)
    arr = np.asarray(flat.image)
    assert (arr[flat.mask(0) == 0] == arr[0, 0]).all()


def test_render_scene_rejects_bad_attributes():
    with pytest.raises(ValueError, match="colour"):
        render_scene(np.random.default_rng(0), kinds=["circle"], colours=["mauve"], sizes=[20])
    with pytest.raises(ValueError, match="kind"):
        render_scene(np.random.default_rng(0), kinds=["star"], colours=["red"], sizes=[20])
    with pytest.raises(ValueError, match="n_shapes"):
        render_scene(np.random.default_rng(0), kinds=["circle", "square"], colours=["red"])


def test_samples_are_consistent_and_answers_unique():
    resolved = {f: 0 for f in ("attribute", "superlative", "counting", "position", "odd_one_out")}
    for row, scene in _samples(200):
        mask = as_mask_array(row["gt_mask"])
        t = row["target_index"]
        assert set(np.unique(mask)) == {0, 1}
        assert (mask == scene.mask(t)).all()
        assert row["gt_bbox"] == mask_bbox(mask)
        assert row["gt_points"] == inscribed_circle_points(mask)
        for x, y in row["gt_points"]:
            assert mask[int(y), int(x)] == 1
        img = np.asarray(row["image"])
        target = scene.shapes[t]
        assert (img[mask == 1] == COLOURS[target.colour]).all()
        assert row["shape_boxes"][t] == row["gt_bbox"]
        assert row["image_size"] == [112, 112] and row["model_size"] == 112 and row["source"] == "shapeworld"
        assert 2 <= len(scene.shapes) <= 4
        # The rationales: detailed is longer; concise is the target in the base's words, and the detailed one names
        # it last, right before the answer (the named boxes of base pre-training: docs/testbed.md).
        assert len(row["detailed"].split()) > len(row["concise"].split())
        named = name_shape(scene, t)
        assert row["concise"] == named
        assert row["detailed"].endswith(named.removeprefix("the ") + ".")
        # it restates the query first, while the query is a few tokens back
        assert row["detailed"].split(".", 1)[0].endswith(" " + row["query"])
        # the shapes are listed from left to right, as the image shows them (not in the order drawn)
        listed = row["detailed"].split(": ", 1)[1].split(".", 1)[0]
        assert re.findall(r"\ban? (\w+ \w+)", listed) == [s.name for s in sorted(scene.shapes, key=lambda s: s.centre)]
        assert describe_scene(scene).split(": ", 1)[1].startswith(listed + ".")
        hits = _resolve(row["query"], _facts(scene))
        if hits is not None:
            assert hits == [t], (row["query"], row["family"], hits, t)
            resolved[row["family"]] += 1
    # The independent resolver covered every family many times.
    assert all(v >= 10 for v in resolved.values()), resolved


def test_concise_is_several_times_shorter_than_detailed():
    rows = [r for r, _ in _samples(200, seed=5)]
    detailed = np.mean([len(r["detailed"].split()) for r in rows])
    concise = np.mean([len(r["concise"].split()) for r in rows])
    assert 3 <= concise <= 8
    assert detailed / concise >= 5


def test_family_weights_select_families():
    rng = np.random.default_rng(0)
    rows = [make_sample(rng, family_weights={"counting": 1.0})[0] for _ in range(20)]
    assert {r["family"] for r in rows} == {"counting"}
    with pytest.raises(ValueError, match="unknown ShapeWorld families"):
        make_sample(rng, family_weights={"colour": 1.0})


def _digest(ds) -> list[str]:
    return [hashlib.sha256(np.asarray(im).tobytes()).hexdigest() for im in ds["image"]]


def test_generate_dataset_is_deterministic_and_seed_dependent():
    a = generate_dataset(12, 4, seed=7)
    b = generate_dataset(12, 4, seed=7)
    c = generate_dataset(12, 4, seed=8)
    for split in ("train", "test"):
        assert _digest(a[split]) == _digest(b[split])
        cols = [k for k in a[split].column_names if k not in ("image", "gt_mask")]
        assert a[split].select_columns(cols).to_list() == b[split].select_columns(cols).to_list()
        assert _digest(a[split]) != _digest(c[split])
    # Rows do not depend on how many were asked for.
    small = generate_dataset(5, 2, seed=7)
    assert _digest(small["train"]) == _digest(a["train"])[:5]
    assert small["test"]["query"] == a["test"]["query"][:2]
    assert a["train"]["id"][:2] == ["train-000000", "train-000001"]


def test_num_proc_gives_the_same_rows():
    one = generate_dataset(60, 0, seed=1)
    two = generate_dataset(60, 0, seed=1, num_proc=2)
    assert _digest(one["train"]) == _digest(two["train"])
    assert one["train"]["detailed"] == two["train"]["detailed"]


def test_train_and_test_are_disjoint():
    dd = generate_dataset(200, 200, seed=0)
    assert not set(_digest(dd["train"])) & set(_digest(dd["test"]))


def test_saved_dataset_reloads_with_schema(shapeworld_dir):
    from datasets import load_from_disk

    dd = load_from_disk(str(shapeworld_dir))
    assert set(dd) == {"train", "test"} and len(dd["train"]) == 64 and len(dd["test"]) == 16
    for col in (*SAMPLE_COLUMNS, "family", "shape_boxes", "target_index"):
        assert col in dd["train"].column_names
    row = dd["test"][3]
    assert isinstance(row["image"], Image.Image) and row["image"].mode == "RGB"
    mask = as_mask_array(row["gt_mask"])
    assert mask.shape == (112, 112) and row["gt_bbox"] == mask_bbox(mask)
    assert all(len(b) == 4 for b in row["shape_boxes"])
    assert row["id"] == "test-000003"


def test_iter_samples_streams_fresh_deterministic_scenes():
    first = [next(iter_samples(3)) for _ in range(2)]
    stream = iter_samples(3, mask_format="numpy")
    rows = [next(stream) for _ in range(5)]
    assert np.array_equal(np.asarray(first[0]["image"]), np.asarray(rows[0]["image"]))
    assert isinstance(first[0]["gt_mask"], Image.Image) and isinstance(rows[0]["gt_mask"], np.ndarray)
    assert [r["id"] for r in rows] == [f"stream-{i:06d}" for i in range(5)]
    digests = {hashlib.sha256(np.asarray(r["image"]).tobytes()).hexdigest() for r in rows}
    assert len(digests) == 5
    split = generate_dataset(5, 5, seed=3)
    assert not digests & (set(_digest(split["train"])) | set(_digest(split["test"])))
    with pytest.raises(ValueError, match="mask_format"):
        next(iter_samples(0, mask_format="png"))


def test_described_stream_tells_the_scene_without_the_query():
    """describe=True adds the scene description: the shape list, one sentence per shape with its place, width and
    corners (the perception part that opens the detailed rationale), and nothing about the query."""
    plain = next(iter_samples(4, mask_format="numpy"))
    row = next(iter_samples(4, mask_format="numpy", describe=True))
    assert "description" not in plain and row["query"] == plain["query"]
    text = row["description"]
    n = len(row["shape_boxes"])
    assert re.match(r"The image shows \w+ shapes: ", text)
    assert len(re.findall(r"pixels wide, with (?:no|\d) corners\.", text)) == n
    for (x1, _, x2, _) in row["shape_boxes"]:
        assert f"{int(x2 - x1 + 1)} pixels wide" in text
    assert row["query"] not in text
    survey = text.split(". ", 1)[1]  # the per-shape sentences, word for word in the detailed rationale
    assert survey in row["detailed"]
    # the target named as the rationales name it: colour, kind and coarse place
    name = row["target_name"]
    assert re.fullmatch(r"the \w+ \w+ (at the|on the|in the) [a-z ]+", name), name
    assert " ".join(name.split()[:3]) in text.lower()  # 'the {colour} {kind}' opens its survey sentence


def test_image_size_scales_everything():
    rng = np.random.default_rng(2)
    row, scene = make_sample(rng, image_size=224)
    assert row["image"].size == (224, 224) and row["model_size"] == 224 and row["image_size"] == [224, 224]
    assert as_mask_array(row["gt_mask"]).shape == (224, 224)
    assert all(27 <= s.size <= 61 for s in scene.shapes)


def test_box_iou_and_baselines_on_hand_made_rows():
    assert box_iou([0, 0, 9, 9], [5, 5, 14, 14]) == pytest.approx(25 / 175)
    assert box_iou([0, 0, 9, 9], [0, 0, 9, 9]) == 1.0
    assert box_iou([0, 0, 9, 9], [9, 0, 20, 9]) == 0.0  # a shared column only: strict overlap rule
    single = [{"gt_bbox": [1, 1, 10, 10], "shape_boxes": [[1, 1, 10, 10]], "model_size": 112}] * 3
    assert random_shape_baseline(single)["acc@0.5"] == 1.0
    pair = [{"gt_bbox": [0, 0, 9, 9], "shape_boxes": [[0, 0, 9, 9], [50, 50, 59, 59]], "model_size": 112}] * 400
    out = random_shape_baseline(pair, seed=0)
    assert out["mean_iou"] == out["acc@0.5"] and 0.4 < out["acc@0.5"] < 0.6 and out["expected_acc@0.5"] == 0.5
    centre = [{"gt_bbox": [50, 50, 61, 61], "shape_boxes": [], "model_size": 112},
              {"gt_bbox": [0, 0, 11, 11], "shape_boxes": [], "model_size": 112}]
    res = centre_box_baseline(centre, box_size=12)  # box [50, 50, 61, 61]: IoU 1 and 0
    assert res["mean_iou"] == pytest.approx(0.5) and res["acc@0.5"] == 0.5
    with pytest.raises(ValueError, match="shape_boxes"):
        random_shape_baseline(centre)


def test_random_shape_baseline_on_shapeworld(shapeworld_dir):
    from datasets import load_from_disk

    train = load_from_disk(str(shapeworld_dir))["train"]
    out = random_shape_baseline(train, seed=0)
    assert out["n"] == 64
    # Shapes never overlap, so a random shape is either the target (IoU 1) or misses it (IoU 0).
    assert out["mean_iou"] == pytest.approx(out["acc@0.5"])
    assert 0.15 < out["acc@0.5"] < 0.6
    assert centre_box_baseline(train)["mean_iou"] < 0.2


def test_synth_cli(tmp_path, capsys):
    from datasets import load_from_disk

    from wise_rl.cli import main

    out = tmp_path / "sw"
    assert main(["synth", "--out", str(out), "--n", "40", "--seed", "1", "--test-fraction", "0.25"]) == 0
    text = capsys.readouterr().out
    assert "train: 30 rows" in text and "test: 10 rows" in text and "wall time" in text
    dd = load_from_disk(str(out))
    assert len(dd["train"]) == 30 and len(dd["test"]) == 10
    assert main(["synth", "--out", str(tmp_path / "sw64"), "--n", "4", "--image-size", "64",
                 "--test-fraction", "0"]) == 0
    assert load_from_disk(str(tmp_path / "sw64"))["train"][0]["image"].size == (64, 64)
    # an existing dataset is never replaced silently
    with pytest.raises(FileExistsError, match="is not empty; pass --overwrite"):
        main(["synth", "--out", str(out), "--n", "4", "--test-fraction", "0"])
    assert len(load_from_disk(str(out))["train"]) == 30
    assert main(["synth", "--out", str(out), "--n", "4", "--test-fraction", "0", "--overwrite"]) == 0
    assert len(load_from_disk(str(out))["train"]) == 4
