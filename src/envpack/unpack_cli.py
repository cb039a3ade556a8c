"""`envunpack`: the unpacker's command line. Imports nothing that only packing needs."""

import sys


def main() -> None:
    print("error: envunpack is not implemented yet", file=sys.stderr)
    raise SystemExit(2)
