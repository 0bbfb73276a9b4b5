"""``python -m linemq ...`` is the ``linemq`` command."""

from linemq.broker.cli import main

if __name__ == "__main__":
    main(prog_name="python -m linemq")
