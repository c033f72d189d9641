"""Role code that never ends (and ignores SIGTERM); writes its pid next to the config."""

import os
import signal
import sys
import time
from pathlib import Path

signal.signal(signal.SIGTERM, signal.SIG_IGN)
Path(sys.argv[1]).with_name("role.pid").write_text(str(os.getpid()))
print("sleeping forever", flush=True)
while True:
    time.sleep(1)
