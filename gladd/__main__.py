"""``python -m gladd``: the same as the ``gladd`` command."""

import sys

from gladd.launch import main

sys.exit(main())
