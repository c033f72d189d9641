"""Role code that reads its config and succeeds."""

import json
import sys

with open(sys.argv[1]) as f:
    config = json.load(f)
print(f"hello from {config['role']} task {config['taskid']}")
