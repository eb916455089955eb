"""Simulated CPS3 card (IAS-ECC profile CPx)."""

from bifente.simulators.cps3.card import Cps3Card

__all__ = ["Cps3Card"]
