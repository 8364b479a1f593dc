"""`python -m gonomaly` (and `torchrun -m gonomaly`): the command line."""

from gonomaly.cli import main

if __name__ == "__main__":
    main()
