"""Running the CLI in-process, as the tests of several modules need it."""

from gonomaly.cli import main


def run_cli(capsys, *args):
    """Run ``gonomaly ARGS`` in-process; return (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
