"""`envpack`: the packer's command line. Typer only; the work happens in `envpack.pack`."""

import sys


def main() -> None:
    print("error: envpack is not implemented yet", file=sys.stderr)
    raise SystemExit(2)
