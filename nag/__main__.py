"""``python -m nag ...``: the ``nag`` command (what :func:`nag.io.fit_cache.fit_cached` runs)."""

from nag.cli import main

if __name__ == "__main__":
    main()
