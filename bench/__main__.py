"""`python -m bench`: the same as the `bench` command."""

from __future__ import annotations

import sys

from bench.cli import main

sys.exit(main())
