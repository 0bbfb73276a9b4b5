"""``python -m linemq.broker [options]`` is ``linemq serve [options]``."""

import sys

from linemq.broker.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]], prog_name="python -m linemq.broker")
