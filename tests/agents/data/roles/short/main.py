"""Role code that works for a moment, then succeeds."""

import os
import sys
import time
from pathlib import Path

Path(sys.argv[1]).with_name("role.pid").write_text(str(os.getpid()))
time.sleep(float(os.environ.get("ROLE_SECONDS", "2")))
print("done")
