import sys

from minibert.cli.main import main

sys.exit(main())
