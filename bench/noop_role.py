"""Role code of the job_latency bench: reads its config, prints one line, exits 0."""

import json
import sys

with open(sys.argv[1]) as f:
    config = json.load(f)
print(f"hello from {config['role']} task {config['taskid']}")
