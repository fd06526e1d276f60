"""The offline tokenizer of the testbed models: a byte-level BPE trained on an inline corpus, as a Qwen2Tokenizer.

:func:`tokenizer_corpus` is deterministic text: every WISE tag, JSON answers with integers 0–999, each official
prompt template on ShapeWorld-like queries, three-stage targets, the chat-template scaffolding and general English.
:func:`train_tokenizer` trains the BPE on it with the Qwen2 pre-tokenizer regex and wraps it as a
``Qwen2Tokenizer`` whose special tokens (:data:`wise_rl.models.SPECIAL_TOKENS`) take the ids right after the BPE
vocabulary, in Qwen's order; eos is ``<|im_end|>``, pad ``<|endoftext|>``; the chat template is the official
Qwen2.5-VL one. The same ``vocab_size`` and ``seed`` give the same vocabulary and merges (2,209 tokens with the
specials for the default corpus). Nothing touches the hub.
"""

from __future__ import annotations

import functools
import json
import random

from wise_rl.models import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, chat_template

# The Qwen2 pre-tokenizer regex (identical to transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

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
