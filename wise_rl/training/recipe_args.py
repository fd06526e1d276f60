"""Recipe command lines: ``--config FILE.yaml`` (with its presets) plus command-line overrides → TRL's dataclasses.

``recipes/sft.py`` and ``recipes/grpo.py`` read ``(script arguments, SFTConfig | GRPOConfig | RLOOConfig,
ModelConfig)`` through TRL's ``TrlParser``, as open-r1 does. Before TRL sees them:

* **TRL's names** work: ``dataset_name`` (TRL's ``ScriptArguments`` and open-r1), ``dataset_train_split`` and
  ``torch_dtype`` are the aliases of ``dataset``, ``dataset_split`` and ``dtype``, and the deprecated
  ``gradient_checkpointing*`` of ``activation_checkpointing*`` (:data:`TRL_ALIASES`), in the YAML and on the command
  line; giving both spellings is an error.
* **Presets**: ``preset: NAME`` (a file in ``recipes/presets/`` or a path; a list applies several in order) gives
  defaults under the file's own keys. ``--preset NAME`` on the command line is an override like any other: the
  preset's keys replace the file's (the replaced ones are logged), explicit command-line flags still win.
* **Unknown keys** raise :class:`~wise_rl.errors.ConfigError` naming the YAML file (the preset file for a preset's
  key) and the closest known key; an unknown command-line flag names the closest known flag.
* ``algorithm: rloo`` reads an ``RLOOConfig``: keys that only ``GRPOConfig`` knows (``loss_type``,
  ``scale_rewards`` …) are dropped with a warning when they come from a YAML file, so a GRPO recipe runs as RLOO with
  ``--algorithm rloo``; given on the command line they are an error.
"""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from wise_rl.errors import ConfigError

logger = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"  # present in a source checkout
PRESETS_DIR = RECIPES_DIR / "presets"
ALGORITHMS = ("grpo", "rloo")

# Other spellings → the field. TRL's ScriptArguments calls the training data `dataset_name` and its split
# `dataset_train_split`; TRL's ModelConfig renamed `torch_dtype` to `dtype` (the old name is still in open-r1 and
# TRL's own example configs); transformers renamed `gradient_checkpointing*` to `activation_checkpointing*` and warns
# on every config built with the old names.
TRL_ALIASES = {
    "dataset_name": "dataset", "dataset_train_split": "dataset_split", "torch_dtype": "dtype",
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}
# Keys TrlParser itself consumes from a YAML file.
PARSER_KEYS = ("env",)


def _load_yaml_mapping(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: the file must hold a YAML mapping of option: value")
    return data


def _canonical_keys(data: dict, where: str) -> dict:
    """``data`` with TRL's alias keys renamed; an alias next to its canonical key is an error naming ``where``."""
    out: dict = {}
    for key, value in data.items():
        name = TRL_ALIASES.get(key, key)
        if name in out:
            raise ConfigError(f"{where}: {key!r} and {name!r} are the same option ({_alias_note(name)}); keep one")
        out[name] = value
    return out


def _alias_note(name: str) -> str:
    aliases = [a for a, canonical in TRL_ALIASES.items() if canonical == name]
    return f"{' / '.join(aliases)} is TRL's name for {name}" if aliases else name


def _preset_path(name: str, config_path: Path | None) -> Path:
    candidates = [Path(name), PRESETS_DIR / name, PRESETS_DIR / f"{name}.yaml"]
    if config_path is not None:
        candidates.insert(1, config_path.parent / name)
    for c in candidates:
        if c.is_file():
            return c
    known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")) if PRESETS_DIR.is_dir() else []
    where = f"{config_path}: " if config_path is not None else "--preset: "
    raise ConfigError(f"{where}preset {name!r} not found; known presets: {', '.join(known) or '(none)'}")


def _preset_names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def load_config_sources(path, preset: Any = None) -> dict[str, tuple[Any, Path]]:
    """``{key: (value, file it came from)}`` for a recipe YAML with its presets merged underneath (the file's own
    keys win), aliases renamed. ``preset`` (names, from the command line) is applied *over* the file."""
    path = Path(path)
    data = _canonical_keys(_load_yaml_mapping(path), str(path))
    merged: dict[str, tuple[Any, Path]] = {}
    file_presets = data.pop("preset", None)
    if file_presets is not None:
        for name in _preset_names(file_presets):
            merged.update(_preset_sources(name, path))
    merged.update({key: (value, path) for key, value in data.items()})
    if preset is not None:
        merged = apply_preset(merged, preset, path)
    return merged


PRESET_FORBIDDEN = ("prompt_template",)  # a preset sets the algorithm, never the wording the model was taught


def _preset_sources(name: str, config_path: Path | None) -> dict[str, tuple[Any, Path]]:
    """A preset's keys; one that sets a :data:`PRESET_FORBIDDEN` key is a :class:`ConfigError` (switching the
    prompt wording under a trained model silently zeroes its format rewards)."""
    path = _preset_path(name, config_path)
    sources = load_config_sources(path)
    for key in PRESET_FORBIDDEN:
        if key in sources:
            raise ConfigError(f"{path}: preset {name!r} sets {key}; presets never change the prompt wording (set it "
                              "in the recipe or on the command line)")
    return sources


def apply_preset(sources: dict[str, tuple[Any, Path]], preset: Any, config_path: Path | None = None):
    """``sources`` with the named presets applied over them (a command-line ``--preset``); logs replaced keys."""
    out = dict(sources)
    for name in _preset_names(preset):
        preset_sources = _preset_sources(name, config_path)
        replaced = sorted(k for k, (v, _) in preset_sources.items() if k in out and out[k][0] != v)
        if replaced:
            logger.warning("--preset %s replaces %s from the config file: %s", name, len(replaced),
                           ", ".join(f"{k}={out[k][0]!r}→{preset_sources[k][0]!r}" for k in replaced))
        out.update(preset_sources)
    return out


def load_config(path) -> dict:
    """A recipe YAML as a mapping, with its ``preset:`` merged underneath: the preset gives defaults, the file's own
    keys win; TRL's alias keys (:data:`TRL_ALIASES`) renamed."""
    return {key: value for key, (value, _) in load_config_sources(path).items()}


# ---- the command line --------------------------------------------------------------------------------------------
def _flag_name(token: str) -> str | None:
    """``learning_rate`` for ``--learning_rate`` / ``--learning_rate=1``; None for values."""
    if not token.startswith("--") or token == "--":
        return None
    return token[2:].split("=", 1)[0]


def _canonical_argv(argv: list[str]) -> list[str]:
    """``argv`` with TRL's alias flags renamed (``--dataset_name X`` → ``--dataset X``); both spellings: error."""
    out, spelled = [], {}
    for token in argv:
        name = _flag_name(token)
        if name is not None and name in TRL_ALIASES:
            token = "--" + TRL_ALIASES[name] + token[2 + len(name):]
            spelled.setdefault(TRL_ALIASES[name], set()).add(name)
        elif name in TRL_ALIASES.values():
            spelled.setdefault(name, set()).add(name)
        out.append(token)
    for name, spellings in spelled.items():
        if len(spellings) > 1:
            raise ConfigError(f"--{' and --'.join(sorted(spellings))} are the same option ({_alias_note(name)}); keep one")
    return out


def _pop_option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    """``argv`` without ``--name VALUE`` / ``--name=VALUE``, and the value (None when absent)."""
    flag = f"--{name}"
    for i, token in enumerate(argv):
        if token == flag:
            if i + 1 >= len(argv):
                raise ConfigError(f"{flag} needs a value")
            return argv[:i] + argv[i + 2:], argv[i + 1]
        if token.startswith(flag + "="):
            return argv[:i] + argv[i + 1:], token.split("=", 1)[1]
    return argv, None


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _known_keys(parser) -> set[str]:
    return {a.dest for a in parser._actions} | set(PARSER_KEYS)


def _check_cli_flags(argv: list[str], parser) -> None:
    flags = set(parser._option_string_actions) | {"--config"}
    for token in argv:
        name = _flag_name(token)
        if name is None or f"--{name}" in flags:
            continue
        if any(f.startswith(f"--{name}") for f in flags):  # an abbreviation argparse resolves (or calls ambiguous)
            continue
        raise ConfigError(f"--{name}: unknown option{_flag_hint(name, flags)}")


def _flag_hint(name: str, flags) -> str:
    close = difflib.get_close_matches(name, sorted(f[2:] for f in flags if f.startswith("--")), n=1, cutoff=0.6)
    return f"; did you mean --{close[0]}?" if close else ""


def _check_keys(sources: dict[str, tuple[Any, Path]], known: set[str]) -> None:
    for key, (_, path) in sources.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r}{_did_you_mean(key, known)}")


def _write_temp_yaml(data: dict) -> str:
    import yaml

    fd, tmp = tempfile.mkstemp(prefix="wise-rl-config-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    atexit.register(lambda: os.path.exists(tmp) and os.unlink(tmp))
    return tmp


def _cli_value(argv: list[str], name: str) -> Any:
    """The value of ``--name`` on the command line (a bare boolean flag: True), else None."""
    for i, token in enumerate(argv):
        if token == f"--{name}":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            return True if nxt is None or nxt.startswith("--") else nxt
        if token.startswith(f"--{name}="):
            return token.split("=", 1)[1]
    return None


def _with_precision(argv: list[str], sources) -> list[str]:
    """``argv`` with ``bf16`` resolved for the hardware when neither the command line nor the YAML sets it
    (:func:`wise_rl.training.precision.precision_argv`: fp32 on a CPU, TRL's bf16 on a GPU)."""
    from wise_rl.training.precision import precision_argv

    def configured(name):
        value = _cli_value(argv, name)
        if value is None and sources is not None and name in sources:
            value = sources[name][0]
        return value

    quiet = logging.getLogger("wise_rl.training.precision")
    level = quiet.level
    if not _main_process():  # the same line from every process of a launch: the first one says it
        quiet.setLevel(logging.ERROR)
    try:
        return precision_argv(argv, configured("bf16"), configured("use_cpu"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        quiet.setLevel(level)


_THREADS_FLAG: dict[str, str | None] = {"value": None}  # the last parsed command line's --threads (wise_rl.threads)


def _split_comma_lists(argv: list[str]) -> list[str]:
    """``--reward_weights 1,1,0.5`` → ``--reward_weights 1 1 0.5`` (TRL's list options take space-separated values;
    the comma form is what a user types first and argparse would answer with a 200-line usage)."""
    out: list[str] = []
    for i, token in enumerate(argv):
        previous = _flag_name(argv[i - 1]) if i else None
        if previous in LIST_FLAGS and "," in token and not token.startswith("--"):
            out.extend(v for v in token.split(",") if v.strip())
        else:
            out.append(token)
    return out


LIST_FLAGS = ("reward_weights", "reward_funcs", "report_to", "lora_target_modules", "stop_strings")


def _prepare(argv: list[str]) -> tuple[list[str], dict[str, tuple[Any, Path]] | None]:
    """Aliases renamed and ``--preset`` folded in: (the remaining argv, the config sources or None)."""
    from wise_rl.threads import pop_threads_flag

    argv, _THREADS_FLAG["value"] = pop_threads_flag(_split_comma_lists(_canonical_argv(list(argv))))
    argv, cli_preset = _pop_option(argv, "preset")
    argv, config = _pop_option(argv, "config")
    sources = None
    if config is not None:
        sources = load_config_sources(config, preset=cli_preset)
    elif cli_preset is not None:
        sources = apply_preset({}, cli_preset)
    return _with_precision(argv, sources), sources


def _finish(parser, argv: list[str], sources, drop: dict[str, str] | None = None):
    """Check keys and flags, hand TrlParser the merged YAML (a temporary file) and parse."""
    if sources is not None:
        for key, reason in (drop or {}).items():
            if key in sources:
                logger.warning("%s: %s ignored (%s)", sources[key][1], key, reason)
                del sources[key]
        _check_keys(sources, _known_keys(parser))
    _check_cli_flags(argv, parser)
    sources = _with_checkpointing_default(parser, argv, sources)
    if sources is not None:
        argv = ["--config", _write_temp_yaml({k: v for k, (v, _) in sources.items()}), *argv]
    def one_line(message: str):  # argparse's error(): its usage runs to 200+ lines, then SystemExit
        raise ConfigError(f"{message} (see the YAML recipes' keys, or --help)")

    parser.error = one_line
    try:
        return parser.parse_args_and_config(argv)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise  # TRL's own checks (generation batch vs num_generations, bf16 without a GPU, …)
        msg = str(exc)
        if "bf16/gpu" in msg:
            msg += " (on a CPU-only machine set use_cpu: true, or bf16: false)"
        raise ConfigError(f"{parser.dataclass_types[1].__name__}: {msg}") from exc


def _with_checkpointing_default(parser, argv: list[str], sources):
    """TRL's configs default ``gradient_checkpointing`` to True, and transformers warns on every config that sets
    the old name: when neither name is given, pass TRL's default under the new name (same setting, no warning)."""
    import dataclasses

    if sources is not None and "activation_checkpointing" in sources:
        return sources
    if any(_flag_name(t) == "activation_checkpointing" for t in argv):
        return sources
    config_fields = {f.name: f for f in dataclasses.fields(parser.dataclass_types[1])}
    old = config_fields.get("gradient_checkpointing")
    if old is None or "activation_checkpointing" not in config_fields or not isinstance(old.default, bool):
        return sources
    return {**(sources or {}), "activation_checkpointing": (old.default, Path("<TRL default>"))}


def parse_sft_args(argv: list[str] | None = None):
    """``(SFTScriptArguments, trl.SFTConfig, trl.ModelConfig)`` from ``--config FILE.yaml`` plus CLI overrides."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from wise_rl.training.script_args import SFTScriptArguments

    argv, sources = _prepare(list(sys.argv[1:] if argv is None else argv))
    return _finish(TrlParser((SFTScriptArguments, SFTConfig, ModelConfig)), argv, sources)


def parse_grpo_args(argv: list[str] | None = None):
    """``(GRPOScriptArguments, trl.GRPOConfig | trl.RLOOConfig, trl.ModelConfig)``.

    The trainer config class depends on ``algorithm``, read first from the command line or the YAML.
    """
    from trl import GRPOConfig, ModelConfig, RLOOConfig, TrlParser

    from wise_rl.training.script_args import GRPOScriptArguments

    argv, sources = _prepare(list(sys.argv[1:] if argv is None else argv))
    algorithm = None
    for i, token in enumerate(argv):
        if token == "--algorithm" and i + 1 < len(argv):
            algorithm = argv[i + 1]
        elif token.startswith("--algorithm="):
            algorithm = token.split("=", 1)[1]
    if algorithm is None and sources is not None and "algorithm" in sources:
        algorithm = sources["algorithm"][0]
    algorithm = algorithm or "grpo"
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm: {algorithm!r} is not supported; expected one of {', '.join(ALGORITHMS)}")
    parser = TrlParser((GRPOScriptArguments, GRPOConfig if algorithm == "grpo" else RLOOConfig, ModelConfig))
    drop = None
    if algorithm == "rloo" and sources is not None:
        grpo_keys = _known_keys(TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig)))
        only_grpo = grpo_keys - _known_keys(parser)
        drop = {key: "a GRPOConfig option that RLOOConfig does not take" for key in only_grpo}
    return _finish(parser, argv, sources, drop)


def apply_recipe_threads(parsed) -> dict:
    """Threads for a parsed recipe (:func:`wise_rl.threads.apply_threads`): ``--threads`` from the command line,
    else ``WISE_RL_THREADS``, else what fits the machine and ``model_name_or_path``."""
    from wise_rl.threads import apply_threads

    _, training_args, model_args = parsed
    cuda = False if getattr(training_args, "use_cpu", False) else None
    record = apply_threads(_THREADS_FLAG["value"], getattr(model_args, "model_name_or_path", None), cuda=cuda)
    if _main_process():  # shown before the recipe sets up logging, as the precision line is, by one process
        logger.warning("threads: %d (%s; --threads N or WISE_RL_THREADS=N to override)", record["threads"],
                       record["threads_reason"])
    return record


def _main_process() -> bool:
    """This process is the launch's first (``RANK`` unset or 0): lines that every process would print alike are
    printed once."""
    return os.environ.get("RANK", "0") == "0"


def run_from_command_line(main, parse, prog: str) -> int:
    """A recipe's ``__main__``: parse, set the threads (:func:`apply_recipe_threads`) and run; a user mistake (a
    wrong option, a bad row, any :class:`~wise_rl.errors.WiseRLError`) printed as one line ``prog: error: …`` with
    exit status 2 instead of a traceback (``WISE_RL_TRACEBACK=1`` shows it)."""
    from wise_rl.errors import WiseRLError

    try:
        parsed = parse()
        apply_recipe_threads(parsed)
        main(*parsed)
    except WiseRLError as exc:
        if os.environ.get("WISE_RL_TRACEBACK"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
