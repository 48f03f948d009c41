"""``python -m gateway_rehearsal``: ``gateway rehearse`` without the plugin's entry point."""

import sys

from gateway_rehearsal.cli import main

sys.exit(main())
