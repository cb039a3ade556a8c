"""envunpack: receive, verify and install an archive on the target machine.

All of it is frozen into the static envunpack, so it imports envpack.core and itself only.
"""
