"""``python -m mpifarmer`` and the ``mpifarmer`` command.

Stop signals are caught from the first moment, before the rest of mpifarmer is imported:
a job stopped while its farmer starts up must still end with exit code 3, not die.
"""

import sys

from mpifarmer.signals import ignore_stop_signals, process_flags

process_flags()


def main() -> int:
    from mpifarmer.cli import main as cli_main

    code = cli_main()
    # The farm is over and recorded: a stop signal from now on must not change the exit code.
    # (Python restores the default actions for its own handlers while it shuts down.)
    ignore_stop_signals()
    return code


if __name__ == "__main__":
    sys.exit(main())
