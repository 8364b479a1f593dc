"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class GonomalyError(Exception):
    """A user-facing error: bad input, a broken file, an unknown option.

    The message is one line and names the file (or spec) and the problem.
    """
