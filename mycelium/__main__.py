import sys

from mycelium.ui.cli import main

sys.exit(main())
