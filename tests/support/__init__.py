"""Test support shared by every test package: bounded waits, an event tap, code zips, a clock."""
