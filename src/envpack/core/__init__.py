"""What both sides share: the archive's layout and formats, checks and plumbing.

No network and no command: envpack.packer and envpack.target build on it.
"""
