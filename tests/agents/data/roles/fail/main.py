"""Role code that fails with some output."""

import sys

for i in range(200):
    print(f"working on step {i}")
print("fatal: the data is cursed", file=sys.stderr)
sys.exit(3)
