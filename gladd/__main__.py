"""``python -m gladd``: the same as the ``gladd`` command."""

import sys

from gladd.cli import main

sys.exit(main())
