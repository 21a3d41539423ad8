"""`python -m aira_async` is the `aira` command."""

from __future__ import annotations

from aira_async.cli import main

if __name__ == "__main__":
    main()
