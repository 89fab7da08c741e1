"""`python -m apps.cli`: the `closedloop` command."""

from apps.cli.app import main

if __name__ == "__main__":
    main()
