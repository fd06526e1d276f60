"""Errors that name what the user got wrong. Light on purpose: the ``wise-rl`` entry point imports this module to
print such errors as one line, and must not pull torch or TRL in to do so."""

from __future__ import annotations


class ConfigError(ValueError):
    """A recipe configuration value is wrong; the message names the option, the value and what is accepted."""


class UsageError(ValueError):
    """A ``wise-rl`` command was given arguments that cannot work (a shard out of range, an output folder that holds
    another run); the message names the flag, the value and what to do instead."""
