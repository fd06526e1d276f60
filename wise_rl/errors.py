"""Every error that names what the user got wrong, under one base class, :class:`WiseRLError`. Light on purpose:
the ``wise-rl`` entry point imports this module to print such errors as one line (``wise-rl VERB: error: …``), and
must not pull torch or TRL in to do so. Each class also derives from the builtin it refines (``ValueError``,
``OSError``, ``RuntimeError``), so ``except ValueError`` keeps working."""

from __future__ import annotations

from typing import Any


class WiseRLError(Exception):
    """The base of every user-facing error of wise_rl: the message names what and where, in one line."""


class ConfigError(WiseRLError, ValueError):
    """A recipe configuration value is wrong; the message names the option, the value and what is accepted."""


class UsageError(WiseRLError, ValueError):
    """A ``wise-rl`` command was given arguments that cannot work (a shard out of range, an output folder that holds
    another run); the message names the flag, the value and what to do instead."""


class EvalError(WiseRLError, RuntimeError):
    """A run folder or prediction file that cannot be used as asked (the message says which and why)."""


class FolderLockedError(WiseRLError, RuntimeError):
    """Another live process holds the folder; the message names it."""


class DiskFullError(WiseRLError, OSError):
    """Writing under a folder failed because its disk is full; the message names the folder and the free space."""


class ModelFolderError(WiseRLError, ValueError):
    """A model folder that cannot load (a config that does not parse, a truncated or missing weight file); the
    message names the file and what is wrong."""


class RunIdentityError(WiseRLError, ValueError):
    """An output folder holds another run (another base model, adapter, dataset or hyper-parameters) than the one
    asked to resume or re-run; the message lists each difference."""


class CheckpointError(WiseRLError, RuntimeError):
    """A checkpoint cannot be used as it is; the message names the folder and what is wrong."""


class ImageError(WiseRLError, ValueError):
    """An image source that cannot be read (what and why in the message). ``code``: ``missing_value`` (no image
    given) or ``unreadable_image``."""

    def __init__(self, message: str, code: str = "unreadable_image"):
        super().__init__(message)
        self.code = code


class DataError(WiseRLError, ValueError):
    """A bad source or row: names the source, the row (index and id), the column and the reason.

    Attributes: ``source`` (path or name), ``row`` (index in the source, None for a source-level problem),
    ``row_id`` (the row's id when known), ``column``, ``reason`` (human text), ``code`` (short reason key, the one
    ``report["skipped"]`` counts), ``kind`` (source kind when known).
    """

    def __init__(self, source: Any, row: Any, column: str | None, reason: str, *, code: str = "invalid",
                 kind: str | None = None, row_id: Any = None):
        self.source = str(source)
        self.row = row
        self.row_id = row_id
        self.column = column
        self.reason = reason
        self.code = code
        self.kind = kind
        where = f"{kind} rows {self.source!r}" if kind else f"source {self.source!r}"
        if row is not None:
            where += f", row {row}"
            if row_id is not None:
                where += f" (id {str(row_id)!r})"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")


class DemoError(WiseRLError, RuntimeError):
    """The demo cannot run as asked; the message says what and how to fix it."""
