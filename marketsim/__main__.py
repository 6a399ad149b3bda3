"""``python -m marketsim``: see ``marketsim._cli`` for the options."""

import sys

from ._cli import main

sys.exit(main())
