"""Role code that reads its config and succeeds."""

import json
import sys

config = json.load(open(sys.argv[1]))
print(f"hello from {config['role']} task {config['taskid']}")
