"""Training precision: fp32 on CPUs unless asked, bf16 on GPUs, explicit values kept."""

import pytest

from wise_rl import training
from wise_rl.training import precision

ZEN3 = {"fpu", "avx2", "fma", "sse4_2"}
SAPPHIRE = ZEN3 | {"avx512f", "avx512_bf16", "amx_bf16"}


def test_cpu_without_native_bf16_resolves_to_fp32():
    bf16, reason = precision.resolve_bf16(None, cuda=False, flags=ZEN3)
    assert bf16 is False
    assert "no native bf16" in reason


def test_cpu_with_native_bf16_still_defaults_to_fp32():
    assert precision.cpu_has_native_bf16(SAPPHIRE)
    bf16, reason = precision.resolve_bf16(None, cuda=False, flags=SAPPHIRE)
    assert bf16 is False
    assert "bf16: true" in reason


@pytest.mark.parametrize("explicit", [True, False])
def test_explicit_value_always_wins(explicit):
    for cuda, flags in ((False, ZEN3), (True, ZEN3), (False, SAPPHIRE)):
        assert precision.resolve_bf16(explicit, cuda=cuda, flags=flags)[0] is explicit


def test_gpu_keeps_trl_default_bf16():
    assert precision.resolve_bf16(None, cuda=True, flags=ZEN3) == (True, "bf16 on the GPU (TRL's default)")


def test_cpu_flags_reads_a_cpuinfo_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert precision.cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


def test_precision_argv_appends_only_when_unset():
    assert precision.precision_argv(["--x", "1"], None, use_cpu=True) == ["--x", "1", "--bf16", "false"]
    assert precision.precision_argv(["--bf16", "true"], "true", use_cpu=True) == ["--bf16", "true"]
    with pytest.raises(ValueError, match="bf16"):
        precision.precision_argv([], "maybe")


def test_recipe_parsing_resolves_bf16_on_cpu():
    script_args, cfg, _ = training.parse_sft_args(
        ["--config", "recipes/tiny/sft.yaml", "--output_dir", "/tmp/wise-rl-precision-test"])
    assert cfg.bf16 is False
    _, cfg, _ = training.parse_sft_args(
        ["--config", "recipes/tiny/sft.yaml", "--output_dir", "/tmp/wise-rl-precision-test", "--bf16", "false"])
    assert cfg.bf16 is False


def test_describe_cpu_names_the_flags_a_figure_depends_on():
    assert precision.describe_cpu(ZEN3).endswith("; avx2, no native bf16)")
    assert precision.describe_cpu(SAPPHIRE).endswith("; avx2, avx512f, amx_bf16, avx512_bf16)")


def test_the_precision_line_is_logged_once_per_process(caplog, monkeypatch):
    """The demo parses several recipes in one process: the same choice is said once, a different one again."""
    monkeypatch.setattr(precision, "_LOGGED", set())
    with caplog.at_level("WARNING", logger=precision.logger.name):
        precision.precision_argv([], None, use_cpu=True)
        precision.precision_argv([], None, use_cpu=True)
        precision.precision_argv([], "true", use_cpu=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision: ")]
    assert len(lines) == 2 and lines[0] != lines[1]
