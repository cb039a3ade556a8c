"""envpack: from a lock or a prefix to an archive, a self-extracting file or an image.

The frozen envunpack never imports this package: pyproject.toml bans it everywhere
else, and tests/test_unpacker_build.py checks what the unpacker loads at run time.
"""
