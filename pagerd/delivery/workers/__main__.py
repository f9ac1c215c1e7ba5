"""`python -m pagerd.delivery.workers`: one delivery worker (started by the daemon only)."""

from pagerd.delivery.workers.process import main

main()
