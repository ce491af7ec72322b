"""One exception type for every mistake a user can make.

The command line turns an ``RtsegError`` into a single ``rtseg: error: ...`` line instead of a
traceback, so each message must name the file, value or option at fault and what was expected.
"""


class RtsegError(Exception):
    """A user-facing error: bad path, unknown name, malformed file or option."""
