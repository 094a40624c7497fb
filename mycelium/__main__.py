import sys

from mycelium.cli import main

sys.exit(main())
