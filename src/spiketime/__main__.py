import sys

from spiketime.app.cli.main import main

sys.exit(main())
