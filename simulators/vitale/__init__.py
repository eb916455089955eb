"""Simulated Vitale 2 card."""

from simulators.vitale.card import Vitale2Card

__all__ = ["Vitale2Card"]
