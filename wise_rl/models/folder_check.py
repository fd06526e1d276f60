"""Is a model folder loadable, and which weights does it hold? Cheap checks that read headers, never the weights.

* :func:`safetensors_problem`: a ``.safetensors`` file has a parseable header and is as long as the header says
  (the checkpoint checks of :mod:`wise_rl.training.checkpoints` use it too).
* :func:`check_model_folder`: before a recipe, ``wise-rl eval`` / ``infer`` / ``score`` / ``export`` load a model:
  ``config.json`` (or ``adapter_config.json``) parses to an object, every weight file named by the shard index
  exists, every ``*.safetensors`` passes :func:`safetensors_problem`. A problem raises
  :class:`~wise_rl.errors.ModelFolderError`, one line naming the file and what is wrong (the libraries would say
  "incomplete metadata" or "Expecting ',' delimiter" from deep inside ``from_pretrained``). A name that is not a
  local folder (a hub id) is left to the loader.
* :func:`weights_digest`: SHA-256 that tells two weight sets apart without reading them whole. Per weight file
  (``*.safetensors``, by name): its name, byte length and header (names, dtypes, shapes, offsets), then the first and
  last :data:`SAMPLE_BYTES` bytes of every tensor's data; files up to :data:`FULL_HASH_BYTES` (LoRA adapters, tiny
  models) are hashed whole. A retrained model changes the bytes of every tensor it trains, so its samples differ;
  a 7B model costs one header read and two 4 KiB reads per tensor (about 700 tensors), milliseconds.
  ``*.bin`` weights are hashed whole.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from wise_rl.errors import ModelFolderError

SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("tokenizer_config.json", "tokenizer.json", "preprocessor_config.json", "processor_config.json",
                   "generation_config.json", "special_tokens_map.json")
SAMPLE_BYTES = 4096
FULL_HASH_BYTES = 64 * 1024 * 1024


def _read_header(path: Path) -> tuple[int, dict, int]:
    """``(header length n, header dict, file size)``; raises ``ValueError`` / ``OSError`` with the reason."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"is truncated ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError(f"is truncated (header of {n} bytes, file of {size})")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise ValueError("has no valid safetensors header")
    return n, header, size


def safetensors_problem(path) -> str | None:
    """None when ``path`` has a parseable safetensors header and is as long as the header says; else the reason,
    starting with the file's name (``model.safetensors is truncated (…)``)."""
    path = Path(path)
    try:
        n, header, size = _read_header(path)
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except ValueError as exc:
        text = str(exc)
        if text.startswith(("is truncated", "has no valid")):
            return f"{path.name} {text}"
        return f"{path.name} has no valid safetensors header ({exc})"
    except (OSError, KeyError, TypeError, IndexError) as exc:
        return f"{path.name} has no valid safetensors header ({exc})"
    if size < 8 + n + end:
        return f"{path.name} is truncated ({size} bytes, the header needs {8 + n + end})"
    return None


def _json_object(path: Path, flag: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFolderError(f"{flag} {path}: not valid JSON ({(str(exc).splitlines() or ['unreadable'])[0]})") from None
    if not isinstance(value, dict):
        raise ModelFolderError(f"{flag} {path}: expected a JSON object, got {type(value).__name__}")
    return value


def check_model_folder(path, flag: str = "model", weights: bool = True) -> None:
    """Raise :class:`ModelFolderError` (one line: ``FLAG FILE: what is wrong``) when the local model or adapter
    folder ``path`` cannot load; a path that is not a local folder is left to the loader (hub ids, a missing folder
    the caller reports). The processor's JSON files (:data:`PROCESSOR_FILES`) must parse when present;
    ``weights=False`` checks only those (a folder read for its tokenizer)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return
    for name in PROCESSOR_FILES:
        if (folder / name).is_file():
            _json_object(folder / name, flag)
    if not weights:
        return
    adapter = (folder / "adapter_config.json").is_file()
    config = folder / ("adapter_config.json" if adapter else "config.json")
    if not config.is_file():
        raise ModelFolderError(f"{flag} {folder}: no config.json (not a model folder)")
    _json_object(config, flag)
    weights = sorted(folder.glob("*.safetensors"))
    for index_name in SHARD_INDEXES:
        index = folder / index_name
        if index.is_file():
            weight_map = _json_object(index, flag).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ModelFolderError(f"{flag} {index}: no weight_map object")
            missing = sorted(s for s in set(weight_map.values()) if not (folder / s).is_file())
            if missing:
                raise ModelFolderError(f"{flag} {index}: names weight file(s) that are missing: {', '.join(missing)}")
    if not weights and not any(folder.glob("*.bin")):
        raise ModelFolderError(f"{flag} {folder}: no weight files (*.safetensors or *.bin)")
    for w in weights:
        problem = safetensors_problem(w)
        if problem:
            raise ModelFolderError(f"{flag} {folder}/{problem}")


def _hash_file(digest, path: Path) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def _hash_samples(digest, path: Path) -> None:
    n, header, size = _read_header(path)
    digest.update(struct.pack("<QQ", size, n))
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    with path.open("rb") as f:
        f.seek(8)
        digest.update(f.read(n))
        for start, end in spans:
            for lo in sorted({start, max(start, end - SAMPLE_BYTES)}):
                f.seek(8 + n + lo)
                digest.update(f.read(min(SAMPLE_BYTES, end - lo)))


def weights_digest(model_dir) -> str | None:
    """Hex SHA-256 identifying the weights of ``model_dir`` (see the module docstring for what is read); None when
    the folder holds no ``*.safetensors`` / ``*.bin`` file."""
    files = sorted(p for pattern in ("*.safetensors", "*.bin") for p in Path(model_dir).glob(pattern))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        if path.suffix == ".safetensors" and path.stat().st_size > FULL_HASH_BYTES:
            _hash_samples(digest, path)
        else:
            digest.update(str(path.stat().st_size).encode() + b"\0")
            _hash_file(digest, path)
    return digest.hexdigest()
