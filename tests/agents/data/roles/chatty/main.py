"""Role code that prints a line every quarter second for 4 s, then a last one on stderr."""

import sys
import time

for i in range(16):
    print(f"line {i}", flush=True)
    time.sleep(0.25)
print("done", file=sys.stderr, flush=True)
