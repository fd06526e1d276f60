"""One module per ``wise-rl`` verb. Each defines ``add_arguments(parser)`` and ``run(args) -> int | None``,
parses nothing itself beyond its arguments, and calls into the library."""

# Metric protocols offered by `eval` and `score`: wise_rl.metrics.PROTOCOLS (tests/test_cli.py checks they agree),
# spelled out here because importing wise_rl.metrics pulls `datasets` in, and `wise-rl eval --help` must not wait.
PROTOCOLS = ("lisa", "seg-zero")
