"""`python -m flamelet` runs the agent."""

from flamelet.main import main

main()
