"""Entry point that PyInstaller freezes into the static `envunpack`."""

from envpack.unpack_cli import main

if __name__ == "__main__":
    main()
