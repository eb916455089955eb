"""Contracts that cross a boundary between the product and its peers, each written once.

A floor beside `apdu/`: it imports nothing of `edged`, `simulators` or `apdu`, so the daemon,
the reference hosts and the card simulators all take the same definition from here.
"""
