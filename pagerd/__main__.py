import sys

from pagerd.main import main

sys.exit(main())
