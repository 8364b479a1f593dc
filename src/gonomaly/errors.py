"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class GonomalyError(Exception):
    """A user-facing error: bad input, a broken file, an unknown option.

    The message is one line and names the file (or spec) and the problem.
    """


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT, SIGTERM or a callback after a complete optimizer step (see
    ``gonomaly.trainer``). Not a GonomalyError: the CLI exits with ``exit_code`` (130 for
    SIGINT, 143 for SIGTERM), and the message says how to resume. ``run_dir`` holds the resume
    checkpoint, or is None when nothing was saved."""

    def __init__(self, message: str, exit_code: int, run_dir=None):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir
