"""``python -m cellcount ...`` is the ``cellcount`` command."""

import sys

from cellcount.cli.main import main

sys.exit(main())
