"""Every command the README, the recipes' docstrings and the YAML launch headers show parses as written, with
the files it names present: recipe commands through the recipes' own parser (and, for the CPU configs, their
validation), ``wise-rl`` commands through the CLI's parser, ``make`` targets in the Makefile. A documented
command cannot drift from the code without failing here."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest
import torch

from wise_rl import cli, training

ROOT = Path(__file__).resolve().parent.parent
CPU_CONFIGS = ("recipes/tiny/", "recipes/presets/ppo.yaml")  # validated too (no hub model needed)


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and ``#`` comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        out.append(current.strip())
        current = ""
    return [re.sub(r"\s+#.*$", "", line) for line in out if line and not line.startswith("#")]


def _readme_commands() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        found += [("README.md", line) for line in _logical_lines(block) if _ours(line)]
    for span in re.findall(r"`((?:wise-rl|accelerate launch|python recipes|make) [^`]+)`", text):
        span = " ".join(span.split())
        # a verb named in prose (`wise-rl synth`) and synopses (a|b, ...) are not commands to run
        if len(span.split()) > 2 and not any(mark in span for mark in ("|", "...", "…", "VERB")):
            found.append(("README.md", span))
    return found


def _ours(line: str) -> bool:
    """A command of this project (not pip, venv or shell set-up)."""
    words = _strip_env(line.split())
    return bool(words) and (words[0] in ("wise-rl", "make", "accelerate") or words[:2] == ["python", "recipes/sft.py"]
                            or words[:2] == ["python", "recipes/grpo.py"])


def _docstring_commands() -> list[tuple[str, str]]:
    found = []
    for script in ("sft", "grpo"):
        path = ROOT / "recipes" / f"{script}.py"
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        indented = "\n".join(line for line in doc.splitlines() if line.startswith("    "))
        found += [(str(path.relative_to(ROOT)), line) for line in _logical_lines(indented)]
    return found


def _yaml_header_commands() -> list[tuple[str, str]]:
    """The ``# Launch: …`` / ``(or: …)`` commands heading each YAML (backslash continuations joined)."""
    found = []
    for path in sorted(ROOT.glob("recipes/*/*.yaml")) + sorted(ROOT.glob("deepspeed_configs/*.yaml")):
        header = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            header.append(line.lstrip("#").strip())
        i = 0
        while i < len(header):
            m = re.search(r"(?:Launch:|or:)\s*((?:accelerate launch|python recipes).*)", header[i])
            i += 1
            if not m:
                continue
            command = m.group(1)
            while command.endswith("\\") and i < len(header):
                command = command[:-1] + " " + header[i]
                i += 1
            command = re.split(r"\s+\(", command)[0].rstrip(")").strip()
            found.append((str(path.relative_to(ROOT)), " ".join(command.split())))
    return found


def _strip_env(words: list[str]) -> list[str]:
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    return words


COMMANDS = _readme_commands() + _docstring_commands() + _yaml_header_commands()


def test_the_documents_show_commands():
    kinds = {c.split()[0] for _, c in COMMANDS}
    assert {"wise-rl", "accelerate", "python", "make"} <= kinds, kinds
    assert len(COMMANDS) > 20


def _check_recipe(words: list[str], where: str) -> None:
    if words[0] == "accelerate":
        assert words[1] == "launch", where
        words = words[2:]
        while words and words[0].startswith("--"):  # accelerate's own options
            if words[0] == "--config_file":
                assert (ROOT / words[1]).is_file(), f"{where}: {words[1]} missing"
            words = words[2:]
    elif words[0] == "python":
        words = words[1:]
        if words[0] == "-m":  # python -m wise_rl.scripts.NAME runs what recipes/NAME.py runs
            words = [f"recipes/{words[1].rsplit('.', 1)[-1]}.py", *words[2:]]
    script, argv = words[0], words[1:]
    assert script in ("recipes/sft.py", "recipes/grpo.py"), f"{where}: {script}"
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    if config is not None:
        assert (ROOT / config).is_file(), f"{where}: {config} missing"
        argv = [a if a != config else str(ROOT / config) for a in argv]
    if "presets/" in (config or "") and "--model_name_or_path" not in argv:
        argv += ["--model_name_or_path", "m", "--dataset", "d"]
    argv += ["--output_dir", "/tmp/wise-rl-doc-check"]
    gpu_config = not (config and any(config.startswith(c) for c in CPU_CONFIGS))
    if gpu_config and not torch.cuda.is_available():
        argv += ["--bf16", "false"]  # a GPU config asks for bf16, which TRL refuses without a GPU
    parse, validate = ((training.parse_sft_args, training.validate_sft_args) if script.endswith("sft.py")
                       else (training.parse_grpo_args, training.validate_grpo_args))
    parsed = parse(argv)
    if config and any(config.startswith(c) for c in CPU_CONFIGS):
        model_args = parsed[2]
        if model_args.model_name_or_path in _documented_outputs():
            # written by an earlier documented step (tiny SFT → tiny GRPO): validate against a model that exists
            model_args.model_name_or_path = str(ROOT / "wise_rl/assets/shapeworld-base")
        validate(*parsed)


def _documented_outputs() -> set[str]:
    """``output_dir`` of every CPU recipe: folders a documented command writes for the next one to read."""
    outs = set()
    for prefix in CPU_CONFIGS:
        for path in ROOT.glob(f"{prefix}*.yaml"):
            out = training.load_config(path).get("output_dir")
            if out:
                outs.add(str(out))
    return outs


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}: {c[:60]}" for w, c in COMMANDS])
def test_documented_command_parses(where, command, monkeypatch):
    monkeypatch.chdir(ROOT)  # documents write paths relative to the checkout
    words = _strip_env(shlex.split(command))
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
        assert words[1] in targets, f"{where}: make {words[1]} is not a Makefile target"
    elif words[0] == "wise-rl":
        verb = words[1]
        assert verb in cli.COMMANDS, f"{where}: unknown verb {verb}"
        if verb in cli.DATACLASS_VERBS:  # its options are a dataclass's, parsed by the verb's own parser
            importlib.import_module(f"wise_rl.commands.{cli.COMMANDS[verb][0]}").parse(words[2:])
        else:
            cli.build_parser(verb).parse_args(words[1:])  # exits (SystemExit) on a flag the verb does not take
    else:
        _check_recipe(words, f"{where}: {command}")


def test_the_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 120
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", text)
    assert "docs/testbed.md" in links and "docs/log.md" in links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_the_readme_reward_example_registers_and_scores(monkeypatch):
    """The README's plug-a-reward block runs as written: the reward is listed and scores a WISE completion."""
    import rewards
    from wise_rl import formats

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    monkeypatch.setattr(rewards, "_REGISTRY", dict(rewards._REGISTRY))  # the example's name stays out of the suite
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    name = re.search(r'@register_reward\("(\w+)"\)', block).group(1)
    assert name in rewards.available_rewards()
    answer = {"bbox": [1, 2, 30, 40], "points_1": [5, 6], "points_2": [7, 8]}
    short = formats.build_target("the red square", answer, "the red square on the left is the target", "wise")
    long = formats.build_target(" ".join(["word"] * 13), answer, "detailed", "wise")
    assert rewards.get_reward(name)(prompts=["q", "q"], completions=[short, long]) == [1.0, 0.0]
