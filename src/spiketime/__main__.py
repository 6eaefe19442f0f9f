import sys

from spiketime.cli.main import main

sys.exit(main())
