"""``python -m chaosgd.tools.stress``: the stress and fault test's command line."""

import sys

from chaosgd.tools.stress.cli import main

sys.exit(main())
