"""The one door from the product to the simulators, which are a separate distribution.

`bifente-sim` (simulators/pyproject.toml) is installed on developer machines and CI, never on
a Pi. Commands that run on simulated hardware (`edged --simulate`, `bifente sim`, `bifente
demo`) check for it first, so its absence is one clear line rather than an ImportError.
"""

from __future__ import annotations

import importlib

__all__ = ["SIM_DISTRIBUTION", "SimulatorsMissing", "require_simulators"]

SIM_DISTRIBUTION = "bifente-sim"


class SimulatorsMissing(LookupError):
    """This install has no simulators (a product install)."""


def require_simulators(what: str) -> None:
    """Raise SimulatorsMissing, naming `what` needed them, unless the simulators are installed."""
    try:
        importlib.import_module("simulators")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "simulators":
            raise  # the simulators are there but one of their own dependencies is not
        raise SimulatorsMissing(
            f"{what} runs on simulated hardware, and this install has no simulators: "
            f"install {SIM_DISTRIBUTION} (pip install ./simulators from a checkout; "
            "`make setup` does it)") from None
