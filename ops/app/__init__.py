"""The composition root: the `skytide` command, its commands, and the wiring that builds a
process's roles from every layer. Nothing below it (ops/ base, storage/, graph/, ingress/,
consumers/) imports it (tests/test_layers.py)."""
