"""Benchmarks against the peers: `scripts/bench pack|unpack|small|unpacker|selfextract|app|
image|registry|all`.

Every figure is a median of several runs, and the contestants of each comparison run in
turn (round-robin, the order rotating every round) within one invocation, so on a shared,
noisy machine they all see the same noise. Ratios are the medians of the per-round ratios.

The environment is the benchmark env of `devtools/fixtures/bigenv.py` (~75 packages, numpy,
scipy, pandas, pyarrow, ...); `--env fixture` runs the same on the small fixture env, `--env
tiny` on 7 packages without python. `small` races envunpack against raw rattler.install on
the fixture env (output on tmpfs) and the tiny env, each contestant a whole process.
`all` also writes docs/benchmarks.md (and docs/benchmarks.svg).
"""
