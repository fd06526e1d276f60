"""``wise-rl export --adapter DIR --out DIR [--base PATH]``: merge a LoRA adapter into its base model.

The result is a standalone folder (safetensors weights, config, generation config, processor) that
``wise_rl.models.load_model`` / ``load_processor`` — and so ``wise-rl eval`` / ``infer`` — read like any model;
the adapter's ``wise_rl.json`` (how to prompt it) is copied along with the merged weights' digest. The export is atomic
(written beside ``--out``, renamed into place when complete); a config that ties the embeddings is untied when
merging made the two matrices differ (:func:`untie_trained_embeddings`).
The base is loaded *unquantized* (``--dtype``, default float32 on CPU, bfloat16 on GPU) even when the adapter was
trained with QLoRA: the merged weights are W + (α/r)·B·A in full precision.
"""

from __future__ import annotations

import json
import logging
import os
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


def untie_trained_embeddings(model) -> bool:
    """When ``model``'s config ties the output embeddings to the input ones but the two matrices differ (a LoRA run
    that trained ``embed_tokens`` or ``lm_head`` through ``modules_to_save``: merging leaves the trained copy in one
    and the base matrix in the other), set ``tie_word_embeddings: false`` on the config and on its nested text
    config (Qwen-VL configs carry it there too), so that a loader that trusts the flag does not re-tie them.
    Returns True when it untied."""
    import torch

    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if inputs is None or outputs is None:
        return False
    a, b = inputs.weight, outputs.weight
    same = a.data_ptr() == b.data_ptr() or (a.shape == b.shape and torch.equal(a.detach(), b.detach()))
    configs = [model.config, getattr(model.config, "text_config", None)]
    tied = [c for c in configs if c is not None and getattr(c, "tie_word_embeddings", False)]
    if same or not tied:
        return False
    for c in tied:
        c.tie_word_embeddings = False
    logger.info("the input and output embeddings differ after merging: exported with tie_word_embeddings false")
    return True


def _saved_keys(folder: Path) -> set[str]:
    from safetensors import safe_open

    keys: set[str] = set()
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            keys.update(f.keys())
    return keys


def _write_export(adapter: Path, base: str, dtype: str, adapter_config: dict, dest: Path) -> None:
    """Merge and save everything (weights, processor, wise_rl.json with the weights digest, export.json) into the
    empty folder ``dest``."""
    from peft import PeftModel

    from wise_rl.models import info as model_info
    from wise_rl.models import load_model, load_processor
    from wise_rl.models.folder_check import weights_digest

    model = PeftModel.from_pretrained(load_model(base, dtype=dtype), str(adapter))
    merged = model.merge_and_unload()
    untied = untie_trained_embeddings(merged)
    merged.save_pretrained(dest, safe_serialization=True)
    if untied and not any(k.endswith("lm_head.weight") for k in _saved_keys(dest)):
        raise RuntimeError(f"export to {dest}: the untied lm_head.weight was not saved")
    processor = load_processor(adapter if _has_processor(adapter) else base)
    processor.save_pretrained(dest)
    digest = weights_digest(dest)
    record = model_info.read(adapter)  # how the adapter was trained to be prompted travels with the weights
    if record is not None:
        model_info.write(dest, record | {"weights_digest": digest})
    (dest / "export.json").write_text(json.dumps(
        {"base": str(base), "adapter": str(adapter), "dtype": str(dtype), "weights_digest": digest,
         "lora_r": adapter_config.get("r"), "lora_alpha": adapter_config.get("lora_alpha"),
         "untied_embeddings": untied}, indent=2) + "\n")


def _move_into_place(tmp: Path, out: Path) -> None:
    """``tmp`` (complete) becomes ``out``; an existing ``out`` is renamed aside first and deleted last, so that
    ``out`` is at every moment either the old export, absent, or the new one — never a mix."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export_merged(adapter, out, base=None, dtype=None, overwrite: bool = False) -> Path:
    """Merge the LoRA ``adapter`` into ``base`` and save model + processor to ``out``; returns ``out``.

    Atomic: everything is written to ``.NAME.export/model`` beside ``out`` (holding ``.NAME.export``'s lock,
    :func:`wise_rl.outdir.hold_folder`: a second export into ``out`` is refused) and renamed to ``out`` when
    complete; ``overwrite`` swaps an existing export out only then. A killed export leaves ``out`` as it was. The adapter and base folders are checked first (:mod:`wise_rl.models.folder_check`)."""
    import torch

    from wise_rl.errors import UsageError
    from wise_rl.models.folder_check import check_model_folder
    from wise_rl.outdir import disk_full_errors, hold_folder

    adapter, out = Path(adapter), Path(out)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"--adapter {adapter}: no adapter_config.json (is it a LoRA training output?)")
    check_model_folder(adapter, "--adapter")
    adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
    base = base or adapter_config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config_file}: no base_model_name_or_path; pass --base")
    check_model_folder(base, "--base")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} is not empty; pass --overwrite to write into it")
    if dtype is None:
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"

    logger.info("merging %s into %s (%s)", adapter, base, dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    guard = out.with_name(f".{out.name}.export")  # one export into `out` at a time; its work folder lives here
    with hold_folder(guard, "wise-rl export"):
        tmp = guard / "model"
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed export left
        tmp.mkdir()
        with disk_full_errors(out.parent, "exporting the merged model"):
            _write_export(adapter, base, dtype, adapter_config, tmp)
            _move_into_place(tmp, out)
    shutil.rmtree(guard, ignore_errors=True)
    return out


def run(args) -> int:
    out = export_merged(args.adapter, args.out, base=args.base, dtype=args.dtype, overwrite=args.overwrite)
    print(f"merged model written to {out}")
    return 0
