"""Development tooling that tests, scripts and the benchmark share: fixture channel and
benchmark env builders, the bare Debian root builder, and one local test HTTP server.

Never shipped: the wheel packages only src/envpack.
"""
