"""A lapse worker process for the crash tests: scheduler and dispatcher until killed.

Configured entirely by LAPSE_* environment variables, like `lapse worker`.
"""

from __future__ import annotations

import faulthandler
import signal

from lapse.runtime.bootstrap import build
from lapse.runtime.settings import load_settings


def main() -> None:
    """Build the services from the environment and run the loops forever."""
    faulthandler.register(signal.SIGUSR1)  # a stuck worker can be asked for its stacks
    services = build(load_settings(), migrate_embedded=False)
    services.loops().run_forever()


if __name__ == "__main__":
    main()
