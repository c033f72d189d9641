"""`python -m flame_sdk.cli` runs flamectl."""

from flame_sdk.cli.app import main

main()
