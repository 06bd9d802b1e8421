"""``python -m swarmdeploy`` is the ``swarmdeploy`` command."""

import sys

from swarmdeploy.entry import main

sys.exit(main())
