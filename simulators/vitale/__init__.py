"""Simulated Vitale 2 card."""

from bifente.simulators.vitale.card import Vitale2Card

__all__ = ["Vitale2Card"]
