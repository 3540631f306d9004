"""``python -m nag.cli ...``: the ``nag`` command."""

from nag.cli import main

if __name__ == "__main__":
    main()
