import sys

from ops.app.cli import main

sys.exit(main())
