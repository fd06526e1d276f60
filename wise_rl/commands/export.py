"""``wise-rl export --adapter DIR --out DIR [--base PATH]``: merge a LoRA adapter into its base model.

The result is a standalone folder (safetensors weights, config, generation config, processor) that
``wise_rl.models.load_model`` / ``load_processor`` — and so ``wise-rl eval`` / ``infer`` — read like any model;
the adapter's ``wise_rl.json`` (how to prompt it) is copied along.
The base is loaded *unquantized* (``--dtype``, default float32 on CPU, bfloat16 on GPU) even when the adapter was
trained with QLoRA: the merged weights are W + (α/r)·B·A in full precision.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--adapter", required=True, help="folder with adapter_config.json + adapter weights "
                        "(a training output_dir or one of its checkpoint-N folders)")
    parser.add_argument("--out", required=True, help="folder to write the merged model into")
    parser.add_argument("--base", default=None, help="base model (default: base_model_name_or_path of the adapter)")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: float32 on CPU, "
                        "bfloat16 with CUDA)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")


def _has_processor(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("preprocessor_config.json", "processor_config.json"))


def export_merged(adapter, out, base=None, dtype=None, overwrite: bool = False) -> Path:
    """Merge the LoRA ``adapter`` into ``base`` and save model + processor to ``out``; returns ``out``."""
    import torch
    from peft import PeftModel

    from wise_rl.models import info as model_info
    from wise_rl.models import load_model, load_processor

    adapter, out = Path(adapter), Path(out)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"--adapter {adapter}: no adapter_config.json (is it a LoRA training output?)")
    adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
    base = base or adapter_config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config_file}: no base_model_name_or_path; pass --base")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} is not empty; pass --overwrite to write into it")
    if dtype is None:
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"

    logger.info("merging %s into %s (%s)", adapter, base, dtype)
    model = load_model(base, dtype=dtype)
    model = PeftModel.from_pretrained(model, str(adapter))
    merged = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    processor = load_processor(adapter if _has_processor(adapter) else base)
    processor.save_pretrained(out)
    prompt_record = model_info.find(adapter)  # how the adapter was trained to be prompted travels with the weights
    if prompt_record is not None:
        shutil.copyfile(prompt_record, out / model_info.FILENAME)
    (out / "export.json").write_text(json.dumps(
        {"base": str(base), "adapter": str(adapter), "dtype": str(dtype),
         "lora_r": adapter_config.get("r"), "lora_alpha": adapter_config.get("lora_alpha")}, indent=2) + "\n")
    return out


def run(args) -> int:
    out = export_merged(args.adapter, args.out, base=args.base, dtype=args.dtype, overwrite=args.overwrite)
    print(f"merged model written to {out}")
    return 0
