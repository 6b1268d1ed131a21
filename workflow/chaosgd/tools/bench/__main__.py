"""``python -m chaosgd.tools.bench``: the benchmarks' command line."""

import sys

from chaosgd.tools.bench import main

sys.exit(main())
