"""The `bifente` command line: cards, identities, simulators, demo."""
