"""``python -m losskit`` runs the same command as ``losskit``."""

import sys

from losskit.app.cli import main

sys.exit(main())
