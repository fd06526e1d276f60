"""The offline model kit: random-weight Qwen2.5-VL presets, an offline BPE tokenizer, and robust loaders.

Nothing here touches the hub. ``build_tiny_model`` trains a byte-level BPE tokenizer on an inline corpus (the WISE
tags, JSON answers, every prompt template, ShapeWorld-like English and some general English), wraps it as a
``Qwen2Tokenizer`` with the Qwen special tokens and the official Qwen2.5-VL chat template, builds a
``Qwen2_5_VLForConditionalGeneration`` from a preset and saves model + processor (safetensors) to a folder that
``transformers.AutoModelForImageTextToText.from_pretrained`` and :func:`load_processor` reload.

Presets (``PRESETS``; the offline vocabulary has 2,209 tokens, input and output embeddings are tied):

- ``tiny``: text hidden 16, 2 layers, 4 heads, 2 KV heads (head_dim 4, ``mrope_section`` [0, 1, 1]: image tokens
  get height and width frequencies, the temporal axis is constant for a still image anyway), vision hidden 16,
  depth 2. For tests: build + save + reload in about a second. 69,600 parameters.
- ``small``: the demo model. Text hidden 128, 3 layers, 4 heads, 2 KV heads (head_dim 32, ``mrope_section``
  [4, 6, 6], ``rope_theta`` 1e4), MLP 256. Its width section gets the lowest frequencies (< 0.01 rad across a
  4-token-wide image), so image columns are told apart by what the tokens show (ShapeWorld's background gradient),
  not by M-RoPE. ``rope_theta`` 20 with sections [2, 7, 7] localised a little faster in a probe, but then every
  dimension turns by radians over 100 tokens, so what the base learns at its short prompt's distances does not
  carry to the longer WISE prompts and rationales: the preset keeps slow dimensions for distance-robust
  retrieval. Vision hidden 64, depth 3, 4 heads, MLP 128. Every Linear has in-features divisible by 64 and
  out-features by 32, so bitsandbytes' CPU nf4 inference kernel accepts it. Measured (seed 0, 112 px,
  2026-11-25, ``wise-rl tiny-model --preset small``): 1,025,792 parameters, 4,111,296 bytes (4.1 MB) of float32
  safetensors; one SFT step (forward + backward + AdamW) on 16 samples of 264 tokens takes ~0.6 s on one CPU thread
  of a shared 2-core machine (a hidden-96 variant with 0.8 M parameters was no faster within the noise).

Token budget: a square ``image_size``² image (112 by default) is not resized; it is cut into
(image_size / 14)² patches and merged 2×2, so 112² → 64 patches → 16 image tokens
(tokens = (image_size / 28)²).

Loading without torchvision: transformers 5.x ``AutoProcessor`` insists on a video processor for Qwen2(.5)-VL, which
needs torchvision. :func:`load_processor` then uses an image-only subclass of the stock processor (sub-processors
are derived from ``__init__``'s signature) with ``Qwen2VLImageProcessorPil``; with torchvision the stock classes
load through ``AutoProcessor``. Either way the result is checked to be a processor with an image processor and a
tokenizer, never a bare tokenizer.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of a random-weight Qwen2.5-VL. ``mrope_section`` (temporal, height, width) sums to head_dim / 2."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    fullatt_block_indexes: tuple[int, ...]
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    window_size: int = 112
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 4096
    vocab_size: int = 3072  # upper bound for the BPE trainer; the corpus yields 2,209 tokens with the specials
    description: str = ""

    def __post_init__(self):
        head_dim, rest = divmod(self.text_hidden, self.text_heads)
        if rest:
            raise ValueError(f"text_hidden {self.text_hidden} is not divisible by text_heads {self.text_heads}")
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
        if self.text_heads % self.text_kv_heads:
            raise ValueError("text_heads must be a multiple of text_kv_heads")
        if self.vision_hidden % self.vision_heads:
            raise ValueError("vision_hidden must be divisible by vision_heads")
        if any(not 0 <= i < self.vision_depth for i in self.fullatt_block_indexes):
            raise ValueError(f"fullatt_block_indexes {self.fullatt_block_indexes} must be < depth {self.vision_depth}")


PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        text_hidden=16, text_layers=2, text_heads=4, text_kv_heads=2, text_intermediate=32,
        mrope_section=(0, 1, 1),
        vision_hidden=16, vision_depth=2, vision_heads=2, vision_intermediate=32, fullatt_block_indexes=(1,),
        description="test model: builds, saves and reloads in about a second",
    ),
    "small": ModelPreset(
        text_hidden=128, text_layers=3, text_heads=4, text_kv_heads=2, text_intermediate=256,
        mrope_section=(4, 6, 6),
        vision_hidden=64, vision_depth=3, vision_heads=4, vision_intermediate=128, fullatt_block_indexes=(2,),
        description="demo model: learns to localise shapes in 112 px ShapeWorld scenes",
    ),
}

# ----------------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------------

# The Qwen2 special tokens, in Qwen's id order (real ids 151643…151656).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
EOS_TOKEN, PAD_TOKEN = "<|im_end|>", "<|endoftext|>"

# The Qwen2 pre-tokenizer regex (identical to transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def chat_template() -> str:
    """The official Qwen2.5-VL chat template (a copy of TRL's ``trl/chat_templates/qwen2_5_vl.jinja``)."""
    return (importlib.resources.files("wise_rl") / "templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")


_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "magenta", "white", "black", "gray",
            "grey", "pink", "brown")
_SHAPES = ("circle", "square", "triangle", "rectangle", "ellipse", "star", "pentagon", "hexagon", "cross",
           "diamond", "shape", "object")
_SIZES = ("small", "large", "big", "tiny", "medium", "little", "huge")
_SUPERLATIVES = ("largest", "smallest", "biggest", "leftmost", "rightmost", "topmost", "bottommost", "highest",
                 "lowest", "brightest", "darkest")
_PLACES = ("on the left", "on the right", "at the top", "at the bottom", "in the center", "in the middle",
           "in the top left corner", "in the top right corner", "in the bottom left corner",
           "in the bottom right corner", "near the edge", "above the others", "below the others")
_RELATIONS = ("to the left of", "to the right of", "above", "below", "next to", "near", "far from",
              "closest to", "furthest from", "between")

_GENERAL_ENGLISH = """\
The quick brown fox jumps over the lazy dog. A picture is worth a thousand words, but a good answer needs only a few.
Please look carefully at the image before you answer the question. Think step by step, then give the final answer.
You are a helpful assistant. The user asks a question about an image and the assistant answers it.
Reasoning segmentation asks a model to find the object that a sentence describes, even when the sentence does not
name the object directly. The model must understand the scene, compare the candidates and choose the one that best
matches the description. It then outputs a bounding box and two points inside the object.
Short explanations are easier to read than long ones. A concise rationale keeps only what is needed to reach the
answer; a detailed rationale explains every step. Both describe the same decision.
There are many kinds of objects in everyday scenes: people, animals, cars, chairs, tables, cups, plates, books,
windows, doors, trees and flowers. Some are large and some are small; some are close to the camera and some are far.
What is the object that could be used to sit on? Which item would you use to drink water? Where is the person who
is holding an umbrella? Find the animal that is sleeping. Show me the thing that keeps food cold.
The answer is correct when the predicted region overlaps the true region. The score is the intersection over union.
Numbers such as 1, 2, 3, 10, 42, 100, 256 and 840 appear in coordinates, sizes and counts.
"""

_COMMON_WORDS = """\
a able about above across act action actually add after again against age ago agree air all allow almost alone
along already also although always am among amount an and animal another answer any anyone anything appear apple
area arm around arrive art as ask at away baby back bad bag ball bank bar base basket be bear beautiful because
become bed been before begin behind being believe bell belong below bench beside best better between beyond bicycle
bird bit black blanket blue board boat body bone book boot both bottle bottom bowl box boy branch bread break
breakfast bridge bright bring broad broken brother brush build building bus busy but butter button buy by cake
call camera can candle cap car card care carpet carry case cat catch cause ceiling center chain chair chance change
cheap check cheese child choose church city class clean clear climb clock close cloth cloud coat coffee cold collar
color colour come common complete computer contain continue control cook cool copy corner correct cost could count
country couple course cover cow cross crowd cry cup curtain cut dark daughter day dead deal dear decide deep desk
detail develop did die different difficult dinner direction dirty discover dish distance do doctor does dog doll
done door double down draw dream dress drink drive drop dry duck during each ear early earth east easy eat edge egg
eight either elephant else empty end enough enter equal even evening ever every everyone everything exact example
except expect explain eye face fact fall family far farm fast father fear feel feet fence few field fill final find
fine finger finish fire first fish five flat floor flower fly follow food foot for force forest forget fork form
forward four free fresh friend from front fruit full game garden gate general get giraffe girl give glass go goat
gold good grass great green ground group grow guess hair half hand handle happen happy hard has hat have he head
hear heart heat heavy held hello help her here high hill him his hit hold hole home hope horse hot hour house how
however hundred hungry idea if important in inch include inside instead into iron is island it its itself jacket
job join juice jump just keep key kind kitchen kite knife know ladder lady lake lamp land language laptop large
last late laugh lay lead leaf learn least leave left leg less let letter level lie life lift light like line lion
list listen little live long look lose lot loud love low machine made main make man many map mark market matter may
me mean measure meat meet member middle might mile milk mind minute mirror miss moment money monkey month moon more
morning most mother motorcycle mountain mouse mouth move much music must my name narrow near nearly neck need never
new next nice night nine no noise none nor north nose not note nothing notice now number object ocean of off offer
office often oil old on once one only open or orange order other our out outside over own page paint pair paper
parent park part party pass past path pen pencil people perhaps person phone photo piano pick picture piece pig
pillow place plane plant plate play please pocket point pole poor possible pot power present pretty pull purple push
put question quick quiet quite rabbit race rain raise reach read ready real reason receive record region remember
repeat reply rest result return rich ride right ring river road rock roll roof room root rope rose round row rule
run safe sail same sand save say school sea seat second see seem sell send sentence serve set seven several shall
shape share sharp she sheep shelf ship shirt shoe shop short should shoulder show side sign silver simple since
sing sink sister sit six size skin sky sleep slow small smile snow so soft soil some someone something sometimes
son song soon sort sound south space speak special speed spoon spring square stand star start state station stay
step stick still stone stop store story straight strange street strong student study such sudden sugar summer sun
suppose sure surface surprise table tail take talk tall tea teach teacher team tell ten than thank that the their
them then there these they thick thin thing think third this those though thought thousand three through throw tie
time tire to today together told tomorrow too took tool top touch toward towel tower town toy track train tree
trip truck true try turn twenty two umbrella uncle under understand until up upon us use usual valley vase very
view village visit voice wait walk wall want warm was wash watch water wave way we wear weather week weight well
went were west what wheel when where whether which while white who whole whose why wide wife will wind window
wing winter wish with within without woman wonder wood word work world would write wrong yard year yellow yes yet
you young your zebra zero
"""

_MORE_ENGLISH = """\
In the kitchen a woman is cutting bread on a wooden board while a man pours coffee into two white cups. On the
table there are plates, forks, knives, a bowl of fruit with apples and oranges, and a glass vase with yellow flowers.
A child sits on a chair near the window and reads a book about animals: a zebra, a giraffe, an elephant and a lion.
Outside, cars and buses wait at the traffic light, a cyclist rides along the street, and people walk their dogs in
the park. The tallest building in the city has a clock at the top; the smaller houses below have red roofs.
On the beach, children build a sand castle near the water. A boat with a white sail moves slowly across the bay
while birds fly above the waves. Someone has left an umbrella, a towel and a pair of shoes beside a striped chair.
In the office, a laptop, a keyboard, a mouse and a phone lie on the desk next to a stack of papers. A plant grows in
a pot in the corner, and a lamp lights the room in the evening. The person wearing glasses is writing a letter.
Questions about images can be simple, such as naming a colour, or they can require reasoning: which object is used
for cutting, which animal is the fastest, what would keep you dry in the rain, or where you could put your keys.
"""


def _scene_phrase(rng: random.Random) -> str:
    colour, shape, size = rng.choice(_COLOURS), rng.choice(_SHAPES), rng.choice(_SIZES)
    kind = rng.randrange(6)
    if kind == 0:
        return f"the {colour} {shape}"
    if kind == 1:
        return f"the {size} {colour} {shape}"
    if kind == 2:
        return f"the {rng.choice(_SUPERLATIVES)} {shape}"
    if kind == 3:
        return f"the {shape} {rng.choice(_RELATIONS)} the {rng.choice(_COLOURS)} {rng.choice(_SHAPES)}"
    if kind == 4:
        return f"the {colour} {shape} {rng.choice(_PLACES)}"
    return f"the {rng.choice(_SUPERLATIVES)} {colour} {shape}"


def tokenizer_corpus(seed: int = 0, n_scenes: int = 600) -> list[str]:
    """The deterministic training corpus of the offline tokenizer (a list of texts).

    It holds every format tag, JSON answers with integers 0–999, each prompt template of
    :func:`wise_rl.formats.render_prompt` on ShapeWorld-like queries, three-stage targets with concise and
    detailed rationales, the chat-template scaffolding and general English.
    """
    from wise_rl import formats

    rng = random.Random(seed)
    texts: list[str] = [
        _GENERAL_ENGLISH, _COMMON_WORDS, _MORE_ENGLISH, " ".join(formats.TAGS), *formats.TEMPLATE_ECHOES,
        formats.EXAMPLE_ANSWER, "system\nYou are a helpful assistant.", "user\n", "assistant\n", "Picture 1: ",
        "Video 1: ",
    ]
    # every integer 0..999 as it appears in answers
    texts.append(" ".join(f"[{i}, {999 - i}]" for i in range(1000)))
    for i in range(n_scenes):
        query = _scene_phrase(rng)
        if rng.random() < 0.3:
            query = rng.choice(("Find ", "Where is ", "Segment ", "Show me ", "Which shape is ")) + query + "."
        # the official templates only: the tokenizer of a built model must not change when a template is added
        texts.append(formats.render_prompt(formats.OFFICIAL_PROMPTS[i % len(formats.OFFICIAL_PROMPTS)], query))
        x1, y1 = rng.randrange(0, 900), rng.randrange(0, 900)
        x2, y2 = min(999, x1 + rng.randrange(5, 300)), min(999, y1 + rng.randrange(5, 300))
        answer = formats.answer_dict([x1, y1, x2, y2], [[rng.randrange(x1, x2 + 1), rng.randrange(y1, y2 + 1)],
                                                        [rng.randrange(x1, x2 + 1), rng.randrange(y1, y2 + 1)]])
        n = rng.randrange(2, 6)
        others = ", ".join(_scene_phrase(rng)[4:] for _ in range(n - 1))
        target = query.rstrip(".").split(" ", 2)[-1] if query[0].isupper() else query
        concise = rng.choice((
            f"{target} is the one",
            f"only {target} matches",
            f"{rng.choice(_SUPERLATIVES)} {rng.choice(_SHAPES)}",
            f"the {rng.choice(_COLOURS)} one {rng.choice(_PLACES)}",
            rng.choice(_COLOURS),
        ))
        detailed = (
            f"The image shows {n} shapes: {target} and {others}. The query asks for {target}. "
            f"Comparing the candidates, the {rng.choice(_COLOURS)} {rng.choice(_SHAPES)} is {rng.choice(_PLACES)}, "
            f"so it is not the answer. Only one object matches the description, therefore the target is "
            f"{target}, whose box spans from ({x1}, {y1}) to ({x2}, {y2})."
        )
        mode = ("wise", "wise", "verbose", "answer")[i % 4]
        texts.append(formats.build_target(concise, answer, detailed, mode=mode))
    return texts


@functools.lru_cache(maxsize=4)
def _trained_bpe(vocab_size: int, seed: int) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """(vocab items, merges) of the byte-level BPE trained on :func:`tokenizer_corpus` (cached per process)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    bpe.train_from_iterator(tokenizer_corpus(seed), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = tuple(tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"])
    return tuple(sorted(model["vocab"].items(), key=lambda kv: kv[1])), merges


def train_tokenizer(vocab_size: int = 3072, seed: int = 0):
    """Train the offline byte-level BPE and wrap it as a ``Qwen2Tokenizer`` with the Qwen special tokens.

    Deterministic: the same ``vocab_size`` and ``seed`` give the same vocabulary and merges. The special tokens take
    the ids right after the BPE vocabulary, in Qwen's order; eos is ``<|im_end|>``, pad ``<|endoftext|>``.
    """
    from transformers import Qwen2Tokenizer

    vocab_items, merge_pairs = _trained_bpe(int(vocab_size), int(seed))
    vocab: dict[str, int] = dict(vocab_items)
    merges = list(merge_pairs)
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False, model_max_length=32768, errors="replace",
    )
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tok.chat_template = chat_template()
    ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    expected = list(range(len(vocab) - len(SPECIAL_TOKENS), len(vocab)))
    if ids != expected:  # pragma: no cover - guards against a transformers behaviour change
        raise RuntimeError(f"special token ids {ids} differ from the expected {expected}")
    return tok


# ----------------------------------------------------------------------------------------------------------------
# Processors
# ----------------------------------------------------------------------------------------------------------------


def _image_only(base: type) -> type:
    """An image-only subclass of a stock Qwen2(.5)-VL processor: ``__init__`` takes no video processor.

    ``ProcessorMixin`` derives its sub-processors from ``__init__``'s signature, so this class loads a checkpoint
    without the (torchvision-only) video processor. It saves under the stock class name so that the folder stays
    loadable by ``AutoProcessor`` elsewhere.
    """
    from transformers.processing_utils import ProcessorMixin

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self) -> dict[str, Any]:
        out = base.to_dict(self)
        if "processor_class" in out:
            out["processor_class"] = base.__name__
        return out

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        result = base.save_pretrained(self, save_directory, push_to_hub=push_to_hub, **kwargs)
        # The tokenizer (and processor config) were stamped with this subclass's name: restore the stock one.
        for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
            path = Path(save_directory) / name
            if path.is_file():
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("processor_class") == type(self).__name__:
                    data["processor_class"] = base.__name__
                    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self.tokenizer._set_processor_class(base.__name__)
        return result

    name = f"ImageOnly{base.__name__}"
    return type(name, (base,), {"__init__": __init__, "to_dict": to_dict, "save_pretrained": save_pretrained,
                                "__module__": __name__, "__qualname__": name})


_IMAGE_ONLY: dict[str, type] = {}


def image_only_processor_class(processor_class: str = "Qwen2_5_VLProcessor") -> type:
    """The image-only subclass of ``Qwen2_5_VLProcessor`` or ``Qwen2VLProcessor`` (built once, then cached)."""
    if processor_class not in _IMAGE_ONLY:
        import transformers

        if processor_class not in ("Qwen2_5_VLProcessor", "Qwen2VLProcessor"):
            raise ValueError(f"no image-only variant for {processor_class!r}; expected a Qwen2(.5)-VL processor")
        _IMAGE_ONLY[processor_class] = _image_only(getattr(transformers, processor_class))
    return _IMAGE_ONLY[processor_class]


def __getattr__(name: str):
    """Expose the image-only processor classes as module attributes (built lazily), so instances pickle."""
    for base in ("Qwen2_5_VLProcessor", "Qwen2VLProcessor"):
        if name == f"ImageOnly{base}":
            return image_only_processor_class(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from exc


def _processor_class_name(path: Path) -> str:
    """The processor class a checkpoint folder declares (processor/preprocessor/tokenizer config, then model type)."""
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        cls = _read_json(path / name).get("processor_class")
        if cls:
            return cls
    model_type = _read_json(path / "config.json").get("model_type", "")
    return {"qwen2_vl": "Qwen2VLProcessor"}.get(model_type, "Qwen2_5_VLProcessor")


def _check_processor(processor, where) -> None:
    from transformers.processing_utils import ProcessorMixin

    if not isinstance(processor, ProcessorMixin):
        raise TypeError(
            f"{where}: loaded a {type(processor).__name__}, not a multimodal processor (is the folder's "
            "processor_class/preprocessor_config.json right?)"
        )
    for attr in ("image_processor", "tokenizer"):
        if getattr(processor, attr, None) is None:
            raise TypeError(f"{where}: the {type(processor).__name__} has no {attr}")


def set_pixel_bounds(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Bound the image processor's resize: images with fewer than ``min_pixels`` (more than ``max_pixels``) pixels
    are scaled up (down), keeping the aspect ratio, to sides that are multiples of patch_size × merge_size."""
    ip = processor.image_processor
    size = dict(getattr(ip, "size", None) or {})
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
        if hasattr(ip, "min_pixels"):
            ip.min_pixels = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
        if hasattr(ip, "max_pixels"):
            ip.max_pixels = int(max_pixels)
    if size.get("shortest_edge", 0) > size.get("longest_edge", float("inf")):
        raise ValueError(f"min_pixels {size['shortest_edge']} > max_pixels {size['longest_edge']}")
    if min_pixels is not None or max_pixels is not None:
        try:
            from transformers.image_utils import SizeDict

            ip.size = SizeDict(**size) if not isinstance(ip.size, dict) else size
        except Exception:  # pragma: no cover - older layouts keep a plain dict
            ip.size = size


@contextmanager
def eval_mode(model) -> Iterator[Any]:
    """``model.eval()`` for the block, then back to training mode if it was training (generation mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


def check_model_location(path) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` when it is meant as a local folder but none exists.

    A hub id is ``name`` or ``org/name``; anything absolute, starting with ``.`` or ``~``, or with more than one
    ``/`` can only be a local path, and ``from_pretrained`` would otherwise fail with a hub-id validation error.
    """
    text = str(path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise FileNotFoundError(f"model {text!r} is a file; expected a model folder (config.json, safetensors)")
        return
    if local.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"model folder {text!r} does not exist (and it is not a hub id 'org/name')")


def load_processor(path, min_pixels: int | None = None, max_pixels: int | None = None,
                   trust_remote_code: bool = False):
    """Load a Qwen2(.5)-VL processor from a local folder (or hub id when online) with or without torchvision.

    With torchvision the stock classes load through ``AutoProcessor``; without it (or if that fails or returns a
    bare tokenizer) an image-only subclass of the declared processor class is used with the PIL image processor.
    ``min_pixels`` / ``max_pixels`` override the folder's resize bounds. The result always has ``image_processor``
    and ``tokenizer`` and supports ``apply_chat_template`` and ``processor(text=..., images=...)``.
    """
    from transformers.utils import is_torchvision_available

    check_model_location(path)
    where = str(path)
    local = Path(path)
    processor = None
    if is_torchvision_available():
        from transformers import AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
            _check_processor(processor, where)
        except (TypeError, ValueError, OSError, ImportError) as exc:
            logger.warning("AutoProcessor could not load %s (%s); using the image-only processor", where, exc)
            processor = None
    if processor is None:
        cls_name = _processor_class_name(local) if local.is_dir() else "Qwen2_5_VLProcessor"
        if cls_name not in ("Qwen2_5_VLProcessor", "Qwen2VLProcessor"):
            raise ValueError(
                f"{where}: processor_class {cls_name!r} is not a Qwen2(.5)-VL processor; "
                "wise_rl.models.load_processor supports Qwen2-VL and Qwen2.5-VL checkpoints"
            )
        processor = image_only_processor_class(cls_name).from_pretrained(path, trust_remote_code=trust_remote_code)
        _check_processor(processor, where)
    set_pixel_bounds(processor, min_pixels, max_pixels)
    tok = processor.tokenizer
    if tok.pad_token is None:
        tok.pad_token = PAD_TOKEN if PAD_TOKEN in tok.get_vocab() else tok.eos_token
    if getattr(processor, "chat_template", None) is None and getattr(tok, "chat_template", None):
        processor.chat_template = tok.chat_template
    return processor


# ----------------------------------------------------------------------------------------------------------------
# Model building and loading
# ----------------------------------------------------------------------------------------------------------------


def preset_config(preset: str | ModelPreset, tokenizer):
    """A ``Qwen2_5_VLConfig`` for ``preset`` whose vocabulary and special token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    p = PRESETS[preset] if isinstance(preset, str) else preset
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": p.text_hidden,
        "intermediate_size": p.text_intermediate,
        "num_hidden_layers": p.text_layers,
        "num_attention_heads": p.text_heads,
        "num_key_value_heads": p.text_kv_heads,
        "max_position_embeddings": p.max_position_embeddings,
        "max_window_layers": p.text_layers,
        "rope_parameters": {"rope_type": "default", "rope_theta": p.rope_theta, "mrope_section": list(p.mrope_section)},
        "bos_token_id": ids[PAD_TOKEN],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
        "tie_word_embeddings": p.tie_word_embeddings,
        "sliding_window": None,
        "use_sliding_window": False,
    }
    vision_config = {
        "depth": p.vision_depth,
        "hidden_size": p.vision_hidden,
        "intermediate_size": p.vision_intermediate,
        "num_heads": p.vision_heads,
        "patch_size": p.patch_size,
        "spatial_merge_size": p.spatial_merge_size,
        "temporal_patch_size": p.temporal_patch_size,
        "window_size": p.window_size,
        "out_hidden_size": p.text_hidden,
        "fullatt_block_indexes": list(p.fullatt_block_indexes),
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=p.tie_word_embeddings,
    )


def count_parameters(model) -> int:
    """Number of distinct parameters (tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def weight_bytes(folder) -> int:
    """Total size in bytes of the ``*.safetensors`` files in ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))


def build_tiny_model(out_dir, preset: str = "tiny", seed: int = 0, image_size: int = 112) -> Path:
    """Build a random-weight Qwen2.5-VL + processor from ``preset`` and save both (safetensors) in ``out_dir``.

    The image processor's ``min_pixels = max_pixels = image_size²`` so an ``image_size``² image (a multiple of 28)
    is not resized: it gives (image_size/14)² patches and (image_size/28)² image tokens (112 → 64 → 16). The config's
    token ids and the generation config (eos ``<|im_end|>``, pad/bos ``<|endoftext|>``) match the tokenizer.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    factor = p.patch_size * p.spatial_merge_size
    if image_size <= 0 or image_size % factor:
        raise ValueError(f"image_size must be a positive multiple of {factor} (patch × merge), got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(p.vocab_size, seed=0)
    config = preset_config(p, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=image_size * image_size, max_pixels=image_size * image_size,
        patch_size=p.patch_size, temporal_patch_size=p.temporal_patch_size, merge_size=p.spatial_merge_size,
    )
    processor = image_only_processor_class("Qwen2_5_VLProcessor")(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template()
    )
    processor.save_pretrained(out)
    # Name the image processor as the stock (torchvision-agnostic) type, as real checkpoints do.
    pp = out / "preprocessor_config.json"
    if pp.is_file():
        data = json.loads(pp.read_text(encoding="utf-8"))
        data["image_processor_type"] = "Qwen2VLImageProcessor"
        data["processor_class"] = "Qwen2_5_VLProcessor"
        pp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def quantization_config(name: str | None, dtype=None):
    """A ``BitsAndBytesConfig`` for ``name`` (``"nf4"``, ``"fp4"``, ``"int8"``) or None for ``None``/``"none"``.

    ``nf4``/``fp4``: 4-bit weights with double quantisation, computing in ``dtype`` (default float32 on CPU,
    bfloat16 when CUDA is available). On CPU, bitsandbytes' 4-bit *inference* kernel (eval mode, no grad, AVX512-BF16
    CPUs) packs weights in blocks of 32 output features, so layers narrower than that (the ``tiny`` preset) only run
    in train mode; ``small`` and real models are fine.
    """
    if name in (None, "none", ""):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if name in ("nf4", "fp4"):
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=name, bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if name == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"unknown quantization {name!r}; expected 'nf4', 'fp4', 'int8' or None")


def load_model(path, dtype=None, quantization: str | None = None, device_map=None,
               attn_implementation: str | None = None, trust_remote_code: bool = False):
    """``AutoModelForImageTextToText.from_pretrained(path, ...)`` with an optional bitsandbytes quantization.

    ``dtype`` is a torch dtype or its name (``"bfloat16"``, ``"auto"``); ``quantization`` one of
    :func:`quantization_config`'s names (``"nf4"`` runs on CPU too with bitsandbytes ≥ 0.50).
    """
    import torch
    from transformers import AutoModelForImageTextToText

    check_model_location(path)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        dtype = getattr(torch, dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    q = quantization_config(quantization, dtype if isinstance(dtype, torch.dtype) else None)
    if q is not None:
        kwargs["quantization_config"] = q
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return AutoModelForImageTextToText.from_pretrained(path, **kwargs)


# Linear layers of the language model only: `model.language_model.layers.N.(self_attn|mlp).X_proj`.
LANGUAGE_MODEL_LORA_REGEX = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
)
ALL_LINEAR_LORA_REGEX = (
    r".*(language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    r"|visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)"
    r"|visual\.merger\.mlp\.(0|2))"
)


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, target: str | list[str] = "language_model",
                task_type: str = "CAUSAL_LM"):
    """A peft ``LoraConfig``. ``target``: ``"language_model"`` (default: attention + MLP projections of the language
    model, via :data:`LANGUAGE_MODEL_LORA_REGEX`; the vision tower's ``gate/up/down_proj`` are left alone),
    ``"all"`` (also the vision blocks and merger), or an explicit list of module names / a regex string."""
    from peft import LoraConfig

    if target == "language_model":
        modules: str | list[str] = LANGUAGE_MODEL_LORA_REGEX
    elif target == "all":
        modules = ALL_LINEAR_LORA_REGEX
    elif isinstance(target, (list, tuple)):
        modules = list(target)
    elif isinstance(target, str):
        modules = target
    else:
        raise ValueError(f"lora target must be 'language_model', 'all', a regex or a list, got {target!r}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type=task_type)
