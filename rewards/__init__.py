"""WISE reward functions on TRL's reward contract, chosen by name.

>>> from rewards import get_reward, available_rewards
>>> "bbox_iou" in available_rewards()
True
>>> iou = get_reward("bbox_iou")
>>> c = '<think>a</think><answer>{"bbox": [0,0,9,9], "points_1": [2,2], "points_2": [5,5]}</answer><d_think>b</d_think>'
>>> round(iou(prompts=["q"], completions=[c], gt_bbox=[[5, 5, 14, 14]])[0], 4)  # 25 / 175
0.1429

Names are resolved in this order:

1. a registered name: every module of this package (``rewards/*.py`` not starting with ``_``) is imported on
   lookup, so a module dropped into ``rewards/`` that decorates a function or class with
   ``@register_reward("my_name")`` is found; modules named in the environment variable ``WISE_RL_REWARD_MODULES``
   (comma-separated, e.g. ``mypkg.my_rewards``) are imported too;
2. a dotted path ``pkg.module:attr`` to a reward function or a reward class.

Options (``get_reward(name, **options)``, or per-reward options in a recipe YAML) go to the reward class'
constructor, or are bound to a reward function's own keyword parameters. An unknown name raises ``ValueError``
listing the known names; an unknown option raises ``TypeError`` naming the reward and its allowed options.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable
from typing import Any

from rewards._base import CONTRACT_ARGS
from rewards._parse import clear_cache as clear_parse_cache  # benches time parsing from a cold cache

ENV_MODULES = "WISE_RL_REWARD_MODULES"
WISE_REWARDS = ("format", "answer_schema", "bbox_iou", "bbox_l1", "points", "self_distillation")
"""The WISE reward set (paper §3, each with weight 1), the one list: the GRPO recipes' default ``reward_funcs``
(:class:`wise_rl.training.script_args.GRPOScriptArguments`) and the starred rows of ``wise-rl rewards``. ``mask_iou``
is an extra a recipe may add: it needs ground-truth masks."""

_REGISTRY: dict[str, Callable] = {}


def register_reward(name: str | None = None) -> Callable:
    """Decorator registering a reward function or class under ``name`` (default: its ``__name__``).

    A class is instantiated with the options by :func:`get_reward`; a function gets its options bound
    (``functools.partial``). Registering a different object under a taken name raises ``ValueError``.
    """
    if callable(name) and not isinstance(name, str):  # used bare: @register_reward
        return register_reward(None)(name)

    def decorator(obj: Callable) -> Callable:
        key = name or getattr(obj, "name", None) or obj.__name__
        if not isinstance(key, str) or not key:
            raise ValueError(f"cannot register {obj!r}: no name")
        existing = _REGISTRY.get(key)
        if existing is not None and _ident(existing) != _ident(obj):
            raise ValueError(f"reward name {key!r} is already registered by {_ident(existing)}")
        _REGISTRY[key] = obj
        return obj

    return decorator


def _ident(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _discover() -> None:
    """Import every public module of this package and of ``$WISE_RL_REWARD_MODULES`` (errors name the module)."""
    importlib.invalidate_caches()
    names = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names += [m.strip() for m in os.environ.get(ENV_MODULES, "").split(",") if m.strip()]
    for module in names:
        try:
            importlib.import_module(module)
        except Exception as e:
            raise ImportError(f"could not import reward module {module!r}: {type(e).__name__}: {e}") from e


def available_rewards() -> list[str]:
    """Sorted names of all registered rewards (after discovery)."""
    _discover()
    return sorted(_REGISTRY)


def describe_rewards() -> list[dict[str, Any]]:
    """Every registered reward (after discovery), sorted by name: ``{"name", "summary"`` (first docstring line),
    ``"options"`` (keyword options its factory takes), ``"source"`` (module.qualname)``}``; ``wise-rl rewards``
    prints these."""
    _discover()
    out = []
    for name in sorted(_REGISTRY):
        obj = _REGISTRY[name]
        doc = inspect.getdoc(obj) or ""
        options, _ = _allowed_options(obj)
        out.append({"name": name, "summary": doc.strip().splitlines()[0] if doc.strip() else "",
                    "options": options, "source": _ident(obj)})
    return out


def _allowed_options(target: Callable) -> tuple[list[str], bool]:
    """Keyword options a reward class or function accepts, and whether it takes arbitrary ``**kwargs``."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return [], True
    allowed, var_kw = [], False
    for p in sig.parameters.values():
        if p.name in ("self",) + CONTRACT_ARGS:
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            allowed.append(p.name)
    return allowed, var_kw


def _check_options(name: str, target: Callable, options: dict[str, Any]) -> None:
    allowed, var_kw = _allowed_options(target)
    if inspect.isclass(target) and var_kw:
        return
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"reward {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) if allowed else '(none)'}"
        )


class NamedReward:
    """A reward function with bound options and a log name (picklable when the function is module-level)."""

    def __init__(self, func: Callable, name: str, options: dict[str, Any]):
        self.func, self.__name__, self.options = func, name, dict(options)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **{**kwargs, **self.options})

    def __repr__(self) -> str:
        return f"<reward {self.__name__} {_ident(self.func)}({self.options})>"


def _build(name: str, target: Callable, options: dict[str, Any]) -> Callable:
    _check_options(name, target, options)
    if inspect.isclass(target):
        reward = target(**options)
        if not hasattr(reward, "__name__"):
            try:
                reward.__name__ = name
            except AttributeError:
                pass
        return reward
    if options or getattr(target, "__name__", None) != name:
        return NamedReward(target, name, options)
    return target


def _resolve_dotted(path: str) -> Callable:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"a dotted reward path looks like 'pkg.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"reward {path!r}: cannot import module {module_name!r}: {e}") from e
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"reward {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(f"reward {path!r} is not callable ({type(obj).__name__})")
    return obj


def get_reward(name: str | Callable, **options: Any) -> Callable:
    """The reward callable for a registered ``name`` or a dotted path ``pkg.module:attr``, built with ``options``.

    A callable passed as ``name`` is returned as is (options are then an error).
    """
    if callable(name) and not isinstance(name, str):
        if options:
            raise TypeError(f"options cannot be given with a reward object ({name!r})")
        return name
    if not isinstance(name, str):
        raise TypeError(f"a reward name must be a string, got {type(name).__name__}")
    if ":" in name:
        target = _resolve_dotted(name)
        return _build(getattr(target, "name", None) or target.__name__, target, options)
    _discover()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown reward {name!r}; known: {', '.join(sorted(_REGISTRY))} "
            "(or give a dotted path 'pkg.module:function')"
        )
    return _build(name, _REGISTRY[name], options)


def get_rewards(names, options: dict[str, dict[str, Any]] | None = None) -> list[Callable]:
    """Several rewards at once: ``names`` in order, ``options[name]`` for each (YAML ``reward_funcs`` + options)."""
    options = options or {}
    unknown = set(options) - set(names)
    if unknown:
        raise ValueError(f"options given for rewards not in the list: {', '.join(sorted(unknown))}")
    return [get_reward(n, **options.get(n, {})) for n in names]


def wise_rewards(**shared: Any) -> list[Callable]:
    """The WISE set (:data:`WISE_REWARDS`), in order.

    ``shared`` options (e.g. ``tokenizer=``, ``device=``) go to each reward that accepts them.
    """
    _discover()
    out = []
    for name in WISE_REWARDS:
        target = _REGISTRY[name]
        allowed, _ = _allowed_options(target)
        out.append(_build(name, target, {k: v for k, v in shared.items() if k in allowed}))
    return out


__all__ = [
    "clear_parse_cache",
    "register_reward", "get_reward", "get_rewards", "available_rewards", "wise_rewards", "NamedReward",
    "WISE_REWARDS", "ENV_MODULES",
]
