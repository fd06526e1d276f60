"""Data: every source (hub name, ``save_to_disk`` folder, parquet/jsonl files, LISA folder, ShapeWorld) into the one
sample schema, in the model frame; and the SFT targets built from those rows.

Public surface (imported lazily, so ``wise-rl --help`` does not pay for ``datasets``):

- :func:`load_source` (:mod:`.loaders`) → ``datasets.Dataset`` in the sample schema; :class:`DataError`;
- :func:`sample_features`, :data:`IGNORE_INDEX`, :func:`as_mask_array` (:mod:`.schema`);
- :func:`load_image`, :class:`ImageError` (:mod:`.images`); :func:`lisa_mask` (:mod:`.lisa`);
- :func:`mask_bbox`, :func:`inscribed_circle_points` (:mod:`.geometry`);
- :func:`build_sft_dataset`, :func:`token_counter` (:mod:`.sft`).

Modules whose names start with ``_`` (``_sources``, ``_converters``, ``_rowtools``) are private helpers of
:func:`load_source`; nothing outside this package imports them.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "load_source": "loaders",
    "DataError": "loaders",
    "sample_features": "schema",
    "IGNORE_INDEX": "schema",
    "as_mask_array": "schema",
    "load_image": "images",
    "ImageError": "images",
    "lisa_mask": "lisa",
    "mask_bbox": "geometry",
    "inscribed_circle_points": "geometry",
    "build_sft_dataset": "sft",
    "token_counter": "sft",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
