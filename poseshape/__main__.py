"""``python -m poseshape`` runs the ``poseshape`` command (also under ``torchrun``)."""

import sys

from poseshape.cli.main import main

sys.exit(main())
