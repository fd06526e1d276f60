"""Loading checkpoints of the supported families (:mod:`wise_rl.models.families`: Qwen2-VL, Qwen2.5-VL, Qwen3-VL
dense and MoE, Qwen3.5): processors without torchvision, models with optional quantization, LoRA.

- :func:`load_processor` (path, pixel bounds) → a multimodal processor, never a bare tokenizer;
  :func:`set_pixel_bounds` bounds the image processor's resize.
- :func:`load_model` (path, dtype, ``quantization`` ``nf4`` | ``fp4`` | ``int8``) → an
  ``AutoModelForImageTextToText``; :func:`quantization_config` builds the bitsandbytes config.
- :func:`lora_config` → a peft ``LoraConfig`` on the language model (or every linear layer).
- :func:`eval_mode`, :func:`count_parameters`, :func:`weight_bytes`; the Qwen2 special tokens and the official
  Qwen2.5-VL :func:`chat_template`.

A path that is meant as a local folder but does not exist raises ``FileNotFoundError`` naming it
(:func:`check_model_location`) instead of a hub-id validation error.

Loading without torchvision: transformers 5.x ``AutoProcessor`` insists on a video processor for every family, which
needs torchvision. :func:`load_processor` then uses an image-only subclass of the stock processor (sub-processors
are derived from ``__init__``'s signature) with ``Qwen2VLImageProcessorPil`` (patch 14 or 16, as the folder says); with torchvision the stock classes
load through ``AutoProcessor``. Either way the result is checked to be a processor with an image processor and a
tokenizer.

Random-weight test and demo models (presets, offline tokenizer) are the testbed's: :mod:`wise_rl.testbed.fixtures.tiny_model`.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wise_rl.errors import ConfigError

logger = logging.getLogger(__name__)

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


def chat_template() -> str:
    """The official Qwen2.5-VL chat template (a copy of TRL's ``trl/chat_templates/qwen2_5_vl.jinja``)."""
    return (importlib.resources.files("wise_rl") / "templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")



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
        for which in ("start", "end"):  # Qwen3VLProcessor reads these; harmless for Qwen2(.5)-VL
            token = getattr(tokenizer, f"vision_{which}_token", f"<|vision_{which}|>")
            setattr(self, f"vision_{which}_token", token)
            setattr(self, f"vision_{which}_token_id", tokenizer.convert_tokens_to_ids(token))

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
    """The image-only subclass of a supported family's processor (``Qwen2_5_VLProcessor``, ``Qwen2VLProcessor``,
    ``Qwen3VLProcessor``; built once, then cached). Another class raises :class:`ConfigError`."""
    if processor_class not in _IMAGE_ONLY:
        import transformers

        from wise_rl.models.families import FAMILIES, PROCESSOR_CLASSES

        if processor_class not in PROCESSOR_CLASSES:
            raise ConfigError(f"processor_class {processor_class!r} is not one of the supported families' "
                              f"({', '.join(PROCESSOR_CLASSES)}; families: {', '.join(FAMILIES)})")
        _IMAGE_ONLY[processor_class] = _image_only(getattr(transformers, processor_class))
    return _IMAGE_ONLY[processor_class]


def __getattr__(name: str):
    """Expose the image-only processor classes as module attributes (built lazily), so instances pickle."""
    for base in ("Qwen2_5_VLProcessor", "Qwen2VLProcessor", "Qwen3VLProcessor"):
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
    from wise_rl.models.families import family_of_model_type

    model_type = _read_json(path / "config.json").get("model_type")
    return "Qwen2_5_VLProcessor" if model_type is None else family_of_model_type(model_type).processor_class


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
    """Load a supported family's processor (:mod:`wise_rl.models.families`) from a local folder (or hub id when online) with or without torchvision.

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
        from wise_rl.models.families import FAMILIES, PROCESSOR_CLASSES

        if cls_name not in PROCESSOR_CLASSES:
            raise ConfigError(f"{where}: processor_class {cls_name!r} is not a supported family's processor "
                              f"({', '.join(PROCESSOR_CLASSES)}); supported families: {', '.join(FAMILIES)}")
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
# Model loading
# ----------------------------------------------------------------------------------------------------------------
def count_parameters(model) -> int:
    """Number of distinct parameters (tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def weight_bytes(folder) -> int:
    """Total size in bytes of the ``*.safetensors`` files in ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))



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
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    text_config = model.config.get_text_config()
    if getattr(text_config, "output_router_logits", False):  # an SFT-trained MoE: generation fails with it on
        text_config.output_router_logits = False
    return model


# Linear layers of the language model only: `model.language_model.layers.N.(self_attn|mlp).X_proj`.
LANGUAGE_MODEL_LORA_REGEX = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
)
ALL_LINEAR_LORA_REGEX = (
    r".*(language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    r"|visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)"
    r"|visual\.merger\.mlp\.(0|2)"
    r"|visual\.blocks\.\d+\.mlp\.linear_fc(1|2)|visual\.(merger|deepstack_merger_list\.\d+)\.linear_fc(1|2))"
)


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, target: str | list[str] = "language_model",
                task_type: str = "CAUSAL_LM", family=None):
    """A peft ``LoraConfig``. ``target``: ``"language_model"`` (default: the linear layers of the language model —
    ``family.lora_regex`` of a :class:`wise_rl.models.families.Family`, else :data:`LANGUAGE_MODEL_LORA_REGEX`,
    attention + MLP projections; the vision tower's ``gate/up/down_proj`` are left alone),
    ``"all"`` (also the vision blocks and merger), or an explicit list of module names / a regex string."""
    from peft import LoraConfig

    if target == "language_model":
        modules: str | list[str] = LANGUAGE_MODEL_LORA_REGEX if family is None else family.lora_regex
    elif target == "all":
        modules = ALL_LINEAR_LORA_REGEX
    elif isinstance(target, (list, tuple)):
        modules = list(target)
    elif isinstance(target, str):
        modules = target
    else:
        raise ValueError(f"lora target must be 'language_model', 'all', a regex or a list, got {target!r}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type=task_type)
