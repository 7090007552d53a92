import sys

from pnpjax.cli import main

sys.exit(main())
