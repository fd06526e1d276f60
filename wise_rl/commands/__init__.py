"""One module per ``wise-rl`` verb. Each defines ``add_arguments(parser)`` and ``run(args) -> int | None``,
parses nothing itself beyond its arguments, and calls into the library."""
