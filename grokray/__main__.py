import sys

from grokray.cli import main

sys.exit(main())
