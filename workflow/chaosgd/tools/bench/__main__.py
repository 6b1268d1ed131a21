"""``python -m chaosgd.tools.bench``: the benchmarks' command line."""

import sys

from chaosgd.tools.bench.cli import main

sys.exit(main())
