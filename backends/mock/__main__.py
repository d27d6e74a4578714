import sys

from gristmill.backends.mock.server import main

sys.exit(main())
