"""``python -m fastbp.bench``: the same as the ``fastbp-bench`` command."""

from fastbp.bench.cli import main

raise SystemExit(main())
