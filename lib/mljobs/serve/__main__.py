import sys

from mljobs.serve.cli import main

sys.exit(main())
