"""``python -m l2o.cli``: the ``l2o`` command."""

import sys

from l2o.cli import main

sys.exit(main())
