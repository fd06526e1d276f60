"""ShapeWorld queries and rationales: a query with exactly one answer in a scene, and the words that justify it.

Five families (``FAMILY_WEIGHTS``), each a builder ``(rng, shapes, image_size) -> _Pick | None`` in
``QUERY_BUILDERS`` that returns None when the scene does not support a unique answer:

``attribute``    plain reference: "the green triangle", "the circle", "the red shape"
``superlative``  size comparison by pixel area: "the largest shape", "the smallest red shape"
``counting``     corners/sides: "the shape with the most corners", "the shape with exactly four sides",
                 "the shape with one more corner than the red square" (circle 0, triangle 3, square 4, …)
``position``     "the topmost shape", "the leftmost circle", "the shape to the left of the blue circle",
                 "the shape closest to the yellow square"
``odd_one_out``  "the shape whose colour differs from all the others", "the only shape that is not a circle"

Uniqueness is enforced with margins so that answers are visible, not just computable: superlatives need the
winner's area to differ from the runner-up's by a factor ≥ ``AREA_RATIO``; extremes need a centre gap ≥
``EXTREME_GAP`` px (at 112 px); "left of R" needs exactly one shape whose centre is more than ``RELATIVE_GAP`` px
to the left of R's, within 45° of the horizontal, and no shape within ``RELATIVE_GAP`` of R's x (ambiguous);
"closest to R" needs the second distance ≥ ``AREA_RATIO`` × the first.

Each pick carries a ``detailed`` rationale (lists the shapes, states the evidence, concludes) and a ``concise`` one
of a few words: the target as :func:`name_shape` names it. :func:`describe_scene` and
:func:`name_shape` put a scene and a shape in the same words without a query.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wise_rl.testbed.shapeworld.scenes import COLOURS, KINDS, Scene, Shape, random_attributes, scale_factor

FAMILY_WEIGHTS: dict[str, float] = {
    "attribute": 0.15,
    "superlative": 0.2,
    "counting": 0.2,
    "position": 0.25,
    "odd_one_out": 0.2,
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_WEIGHTS)

AREA_RATIO = 1.3
EXTREME_GAP = 6.0
RELATIVE_GAP = 4.0

_NUMBER_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _where(shape: Shape, image_size: int) -> str:
    """Coarse location by thirds of the frame: 'at the top left', 'on the right', 'in the centre', …"""
    cx, cy = shape.centre
    col = "left" if cx < image_size / 3 else ("right" if cx >= 2 * image_size / 3 else "")
    row = "top" if cy < image_size / 3 else ("bottom" if cy >= 2 * image_size / 3 else "")
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the centre"


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _left_to_right(shapes: Sequence[Shape]) -> list[Shape]:
    """The shapes by the x of their centre (then y): the order a description walks them in. An order the image
    shows, not the order they were drawn in, so that a model can learn which shape comes next."""
    return sorted(shapes, key=lambda s: (s.centre[0], s.centre[1]))


def _listing(shapes: Sequence[Shape]) -> str:
    return _join([_a(s.name) for s in _left_to_right(shapes)])


def describe_scene(scene: Scene) -> str:
    """The scene described without any query: the shapes, then one sentence per shape (place, width, corners), each
    from left to right.

    The perception half of every detailed rationale, in its first wording ("The image shows {n} shapes: …" +
    :func:`_survey`); the base model learns it next to grounding so that it can still write (see
    :mod:`wise_rl.testbed.pretrain.run`)."""
    shapes = scene.shapes
    n = _NUMBER_WORDS.get(len(shapes), str(len(shapes)))
    return f"The image shows {n} shapes: {_listing(shapes)}. {_survey(shapes, scene.image_size)}"


def name_shape(scene: Scene, index: int) -> str:
    """Shape ``index`` named in words: 'the {colour} {kind} {where}' (e.g. 'the red pentagon at the bottom'), the
    words the rationales use for it."""
    shape = scene.shapes[index]
    return f"the {shape.name} {_where(shape, scene.image_size)}"


def _intro(rng: np.random.Generator, shapes: Sequence[Shape], image_size: int, query: str) -> str:
    n = _NUMBER_WORDS.get(len(shapes), str(len(shapes)))
    scene = _pick(
        rng,
        (
            "The image shows {n} shapes: {list}.",
            "There are {n} shapes in the scene: {list}.",
            "I can see {n} shapes: {list}.",
        ),
    ).format(n=n, list=_listing(shapes))
    ask = _pick(rng, ("The question asks for {q}.", "I need to find {q}.", "We are looking for {q}.")).format(q=query)
    # The query first, while it is a few tokens back: restated after the scene, ~80 tokens on, a small model
    # copied it wrong in most scenes (docs/testbed.md, "the query first").
    return f"{ask} {scene} {_survey(shapes, image_size)}"


def _survey(shapes: Sequence[Shape], image_size: int) -> str:
    """One sentence per shape with what a query can hinge on (place, width, corners): the walk through the
    evidence that brings the detailed rationale near the length of a real verbose chain of thought (Seg-Zero's
    run to 110–165 tokens), so the verbose baseline costs about what it costs on real data."""
    sentences = []
    for s in _left_to_right(shapes):
        x1, _, x2, _ = s.box
        corners = "no corners" if s.corners == 0 else f"{s.corners} corners"
        sentences.append(f"The {s.name} is {_where(s, image_size)}, {x2 - x1 + 1} pixels wide, with {corners}.")
    return " ".join(sentences)


def _conclude(rng: np.random.Generator, shape: Shape, image_size: int, reason: str) -> str:
    """The closing sentence: the deciding fact (``reason``, a verb phrase), then the target and its coarse location,
    named last so the answer follows the name as it does in the base's named boxes."""
    return _pick(
        rng,
        (
            "So the target, which {reason}, is the {name} {where}.",
            "The shape that {reason} is the {name} {where}.",
            "Therefore the answer, which {reason}, is the {name} {where}.",
        ),
    ).format(name=shape.name, where=_where(shape, image_size), reason=reason)


def _concise(target: Shape, image_size: int) -> str:
    """The concise rationale: the target named as :func:`name_shape` names it ('the red pentagon at the bottom'),
    the words the base grounds after (its named boxes), so the answer that follows lands where the name says. The
    deciding fact is left to the detailed rationale: with it the concise part was twice as long and no more
    accurate (``docs/testbed.md``, "rationales in its words")."""
    return f"the {target.name} {_where(target, image_size)}"


def _descriptors(shapes: Sequence[Shape], i: int) -> list[str]:
    """Every phrase among '{colour} {kind}', '{kind}', '{colour} shape' that picks out shape i alone."""
    s = shapes[i]
    out = []
    if sum(t.kind == s.kind for t in shapes) == 1:
        out.append(s.kind)
    if sum(t.colour == s.colour for t in shapes) == 1:
        out.append(f"{s.colour} shape")
    if sum(t.kind == s.kind and t.colour == s.colour for t in shapes) == 1:
        out.append(s.name)
    return out


def _subsets(shapes: Sequence[Shape]) -> list[tuple[str, str, list[int]]]:
    """(phrase noun, explanation, member indices): all shapes, and each colour / kind shared by ≥ 2 shapes."""
    out = [("shape", "", list(range(len(shapes))))]
    for c, k in Counter(s.colour for s in shapes).items():
        if k >= 2:
            out.append((f"{c} shape", f"Only the {c} shapes count", [i for i, s in enumerate(shapes) if s.colour == c]))
    for kind, k in Counter(s.kind for s in shapes).items():
        if k >= 2:
            out.append((kind, f"Only the {kind}s count", [i for i, s in enumerate(shapes) if s.kind == kind]))
    return out


@dataclass(frozen=True)
class _Pick:
    query: str
    target: int
    concise: str
    detailed: str
    variant: str


def _ordered_winner(values: dict[int, float], largest: bool, gap: float, ratio: bool) -> int | None:
    """Index of the unique extreme value, provided it beats the runner-up by ``gap`` (difference or ratio)."""
    if len(values) < 2:
        return None
    order = sorted(values, key=lambda i: values[i], reverse=largest)
    best, second = values[order[0]], values[order[1]]
    if ratio:
        lo, hi = (second, best) if largest else (best, second)
        return order[0] if lo > 0 and hi / lo >= gap else None
    return order[0] if abs(best - second) >= gap else None


# ----------------------------------------------------------------------------------------------------------------
# Query families: each returns a _Pick with a unique answer, or None when the scene does not support one
# ----------------------------------------------------------------------------------------------------------------
def _q_attribute(rng, shapes, S) -> _Pick | None:
    choices = [(i, d) for i in range(len(shapes)) for d in _descriptors(shapes, i)]
    if not choices:
        return None
    t, desc = _pick(rng, choices)
    target = shapes[t]
    query = f"the {desc}"
    needs_kind = desc.endswith(target.kind)
    needs_colour = desc.startswith(target.colour)
    reasons = []
    for i, s in enumerate(shapes):
        if i == t:
            continue
        kind_ok = s.kind == target.kind
        colour_ok = s.colour == target.colour
        if needs_kind and needs_colour:
            if colour_ok:
                reasons.append(f"the {s.name} is {target.colour} but not {_a(target.kind)}")
            elif kind_ok:
                reasons.append(f"the {s.name} is {_a(target.kind)} but not {target.colour}")
            else:
                reasons.append(f"the {s.name} is neither")
        elif needs_kind:
            reasons.append(f"the {s.name} is not {_a(target.kind)}")
        else:
            reasons.append(f"the {s.name} is not {target.colour}")
    evidence = "Checking each shape: " + "; ".join(reasons) + "."
    detailed = " ".join([_intro(rng, shapes, S, query), evidence, _conclude(rng, target, S, "is the only match")])
    return _Pick(query, t, _concise(target, S), detailed, "attribute")


def _q_superlative(rng, shapes, S) -> _Pick | None:
    cands = []
    for noun, why, members in _subsets(shapes):
        for largest in (True, False):
            w = _ordered_winner({i: float(shapes[i].area) for i in members}, largest, AREA_RATIO, ratio=True)
            if w is not None:
                cands.append((noun, why, members, largest, w))
    if not cands:
        return None
    sub = [c for c in cands if c[1]]
    noun, why, members, largest, t = _pick(rng, sub if sub and rng.random() < 0.6 else cands)
    target = shapes[t]
    adj = _pick(rng, ("largest", "biggest")) if largest else "smallest"
    query = f"the {adj} {noun}"
    parts = [_intro(rng, shapes, S, query)]
    if why:
        parts.append(f"{why}: {_join(['the ' + shapes[i].name for i in members])}.")
    areas = [f"the {shapes[i].name} about {int(round(shapes[i].area, -1))}" for i in members]
    parts.append(f"Their areas in pixels: {_join(areas)}.")
    parts.append(_conclude(rng, target, S, f"is clearly the {'largest' if largest else 'smallest'}"))
    word = "largest" if largest else "smallest"
    return _Pick(query, t, _concise(target, S), " ".join(parts), f"{word}-{'all' if not why else 'subset'}")


def _corner_text(s: Shape) -> str:
    return f"the {s.kind} has no corners" if s.corners == 0 else f"the {s.kind} has {_NUMBER_WORDS[s.corners]}"


def _q_counting(rng, shapes, S) -> _Pick | None:
    counts = {i: float(s.corners) for i, s in enumerate(shapes)}
    cands = []  # (query, target, variant, deciding phrase)
    for most in (True, False):
        w = _ordered_winner(counts, most, 1.0, ratio=False)
        if w is not None:
            unit = _pick(rng, ("corners", "sides")) if (most or shapes[w].corners > 0) else "corners"
            cands.append((f"the shape with the {'most' if most else 'fewest'} {unit}", w,
                          "most" if most else "fewest", f"has the {'most' if most else 'fewest'} {unit}"))
    by_count = Counter(s.corners for s in shapes)
    for i, s in enumerate(shapes):
        if by_count[s.corners] != 1:
            continue
        if s.corners == 0:
            cands.append(("the shape with no corners", i, "exactly", "has no corners"))
        else:
            unit = _pick(rng, ("corners", "sides"))
            num = _NUMBER_WORDS[s.corners]
            cands.append((f"the shape with exactly {num} {unit}", i, "exactly", f"has {num} {unit}"))
        for r in range(len(shapes)):
            ref = shapes[r]
            if r == i or ref.corners == 0 or abs(s.corners - ref.corners) != 1:
                continue
            descs = _descriptors(shapes, r)
            if descs:
                more = s.corners > ref.corners
                d = _pick(rng, descs)
                cands.append((f"the shape with one {'more' if more else 'fewer'} corner than the {d}", i,
                              "relative", f"has one {'more' if more else 'fewer'} corner than the {ref.kind}"))
    if not cands:
        return None
    query, t, variant, deciding = _pick(rng, cands)
    target = shapes[t]
    intro = _intro(rng, shapes, S, query)
    lead = _pick(rng, ("Counting corners: ", "Corners per shape: ", "Let me count corners: "))
    evidence = lead + _join([_corner_text(s) for s in shapes]) + "."
    parts = [intro, evidence]
    parts.append(_conclude(rng, target, S, f"alone {deciding}"))
    return _Pick(query, t, _concise(target, S), " ".join(parts), variant)


_AXES = {  # word: (coordinate index, largest?)
    "topmost": (1, False),
    "bottommost": (1, True),
    "leftmost": (0, False),
    "rightmost": (0, True),
}
_RELATIONS = {  # query phrase: (coordinate index, sign of ref − other that qualifies)
    "to the left of": (0, 1),
    "to the right of": (0, -1),
    "above": (1, 1),
    "below": (1, -1),
}


def _q_position(rng, shapes, S) -> _Pick | None:
    scale = scale_factor(S)
    ext, rel, near = [], [], []
    for noun, why, members in _subsets(shapes):
        for word, (axis, largest) in _AXES.items():
            w = _ordered_winner({i: shapes[i].centre[axis] for i in members}, largest, EXTREME_GAP * scale, False)
            if w is not None:
                ext.append((noun, why, members, word, axis, w))
    for r in range(len(shapes)):
        descs = _descriptors(shapes, r)
        if not descs:
            continue
        rc = shapes[r].centre
        for phrase, (axis, sign) in _RELATIONS.items():
            diffs = {i: sign * (rc[axis] - s.centre[axis]) for i, s in enumerate(shapes) if i != r}
            hits = [i for i, d in diffs.items() if d > RELATIVE_GAP * scale]
            if len(hits) == 1 and all(abs(d) > RELATIVE_GAP * scale for d in diffs.values()):
                # The answer must lie mostly in that direction (within 45° of the axis), not merely past R's x/y.
                if diffs[hits[0]] >= abs(rc[1 - axis] - shapes[hits[0]].centre[1 - axis]):
                    rel.append((phrase, r, _pick(rng, descs), hits[0], axis))
        if len(shapes) >= 3:
            dist = {i: math.dist(rc, s.centre) for i, s in enumerate(shapes) if i != r}
            w = _ordered_winner(dist, False, AREA_RATIO, ratio=True)
            if w is not None:
                near.append((r, _pick(rng, descs), w, dist))
    kinds = [k for k, v in (("extreme", ext), ("relative", rel), ("nearest", near)) if v]
    if not kinds:
        return None
    kind = _pick(rng, kinds)
    if kind == "extreme":
        noun, why, members, word, axis, t = _pick(rng, ext)
        target = shapes[t]
        query = f"the {word} {noun}"
        parts = [_intro(rng, shapes, S, query)]
        if why:
            parts.append(f"{why}: {_join(['the ' + shapes[i].name for i in members])}.")
        coord = "y" if axis else "x"
        label = "vertical positions (y from the top)" if axis else "horizontal positions (x from the left)"
        vals = [f"the {shapes[i].name} at {coord} {round(shapes[i].centre[axis])}" for i in members]
        parts.append(f"Their {label}: {_join(vals)}.")
        parts.append(_conclude(rng, target, S, f"is the {word}"))
        return _Pick(query, t, _concise(target, S), " ".join(parts), "extreme")
    if kind == "relative":
        phrase, r, desc, t, axis = _pick(rng, rel)
        target, ref = shapes[t], shapes[r]
        query = f"the shape {phrase} the {desc}"
        coord = "y" if axis else "x"
        parts = [_intro(rng, shapes, S, query), f"The {ref.name} is at {coord} {round(ref.centre[axis])}."]
        others = [
            f"the {s.name} at {coord} {round(s.centre[axis])} is {phrase if i == t else _opposite(phrase)} it"
            for i, s in enumerate(shapes)
            if i != r
        ]
        parts.append(_join(others).capitalize() + ".")
        parts.append(_conclude(rng, target, S, f"is the only shape {phrase} the {ref.name}"))
        return _Pick(query, t, _concise(target, S), " ".join(parts), "relative")
    r, desc, t, dist = _pick(rng, near)
    target, ref = shapes[t], shapes[r]
    word = _pick(rng, ("closest", "nearest"))
    query = f"the shape {word} to the {desc}"
    cx, cy = ref.centre
    parts = [
        _intro(rng, shapes, S, query),
        f"The {ref.name} is at ({round(cx)}, {round(cy)}).",
        "Distances from it: " + _join([f"the {shapes[i].name} about {round(d)} px" for i, d in dist.items()]) + ".",
        _conclude(rng, target, S, f"is clearly the {word}"),
    ]
    return _Pick(query, t, _concise(target, S), " ".join(parts), "nearest")


def _opposite(phrase: str) -> str:
    return {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above"}[phrase]


def _q_odd_one_out(rng, shapes, S) -> _Pick | None:
    if len(shapes) < 3:
        return None
    cands = []
    for attr in ("colour", "kind"):
        counts = Counter(getattr(s, attr) for s in shapes)
        if len(counts) == 2 and min(counts.values()) == 1:
            odd_value = min(counts, key=counts.get)
            common = max(counts, key=counts.get)
            t = next(i for i, s in enumerate(shapes) if getattr(s, attr) == odd_value)
            cands.append((attr, t, common))
    if not cands:
        return None
    attr, t, common = _pick(rng, cands)
    target = shapes[t]
    word = "colour" if attr == "colour" else "kind"
    if rng.random() < 0.5:
        query = _pick(rng, (f"the shape whose {word} differs from all the others", f"the odd one out by {word}"))
    else:
        query = f"the only shape that is not {common if attr == 'colour' else _a(common)}"
    others = [s for i, s in enumerate(shapes) if i != t]
    repeated = Counter(s.name for s in others)
    same = _join([f"the {s.name} {_where(s, S)}" if repeated[s.name] > 1 else f"the {s.name}" for s in others])
    all_ = "both" if len(others) == 2 else "all"
    if attr == "colour":
        ev = f"{same.capitalize()} are {all_} {common}, while the {target.kind} is {target.colour}."
    else:
        ev = f"{same.capitalize()} are {all_} {common}s, while the {target.colour} shape is {_a(target.kind)}."
    parts = [_intro(rng, shapes, S, query), ev, _conclude(rng, target, S, "is the odd one out")]
    return _Pick(query, t, _concise(target, S), " ".join(parts), attr)


QUERY_BUILDERS = {
    "attribute": _q_attribute,
    "superlative": _q_superlative,
    "counting": _q_counting,
    "position": _q_position,
    "odd_one_out": _q_odd_one_out,
}


def family_attributes(rng, family: str, image_size: int):
    """Scene attributes biased so that the family's queries are common (sharing colours/kinds, distinct kinds …)."""
    if family in ("odd_one_out",):
        n = int(rng.integers(3, 5))
    else:
        n = int(rng.integers(2, 5))
    kinds, colours, sizes = random_attributes(rng, n, image_size)
    if family == "attribute" and n >= 3 and rng.random() < 0.6:
        colours[1] = colours[0]  # a distractor with the same colour …
        kinds[2] = kinds[0]  # … and one of the same kind: the full phrase is then needed
    elif family == "superlative" and rng.random() < 0.5:
        colours[1] = colours[0]  # enables "the largest red shape"
    elif family == "counting" and rng.random() < 0.7:
        kinds = [KINDS[i] for i in rng.permutation(len(KINDS))[:n]]
    elif family == "odd_one_out":
        odd = int(rng.integers(n))
        names = list(COLOURS) if rng.random() < 0.5 else list(KINDS)
        common, other = (names[i] for i in rng.choice(len(names), 2, replace=False))
        values = [other if i == odd else common for i in range(n)]
        if names[0] in COLOURS:
            colours = values
        else:
            kinds = values
    return kinds, colours, sizes


