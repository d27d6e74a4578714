import sys

from gristmill.cli.main import main

sys.exit(main())
