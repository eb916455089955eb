"""The one door from the product to the simulators, which are a separate distribution.

`bifente-sim` (simulators/pyproject.toml) is installed on developer machines and CI, never on
a Pi. Commands that run on simulated hardware (`edged --simulate`, `bifente sim`, `bifente
demo`) check for it first, so its absence is one clear line rather than an ImportError.
They get their simulated parts (cards, terminal, mail and DMP hosts) here, from one
`SimulatedWorld` (simulators/world.py): no other module of the product starts a simulated part
(tests/test_layers.py checks it).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # re-exported for annotations: the product imports no simulator at run time
    from bifente.simulators.world import SimulatedWorld as SimulatedWorld

__all__ = ["SIM_DISTRIBUTION", "SimulatorsMissing", "require_simulators", "simulated_world"]

SIM_DISTRIBUTION = "bifente-sim"


class SimulatorsMissing(LookupError):
    """This install has no simulators (a product install)."""


def require_simulators(what: str) -> None:
    """Raise SimulatorsMissing, naming `what` needed them, unless the simulators are installed."""
    try:
        importlib.import_module("bifente.simulators")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name not in ("bifente", "bifente.simulators"):
            raise  # the simulators are there but one of their own dependencies is not
        raise SimulatorsMissing(
            f"{what} runs on simulated hardware, and this install has no simulators: "
            f"install {SIM_DISTRIBUTION} (pip install ./simulators from a checkout; "
            "`make setup` does it)") from None


def simulated_world(what: str, cps: str | None = "gp", vitale: str | None = "family", *,
                    cards: Literal["terminal", "pcsc", "none"] = "terminal",
                    mail: bool | Mapping[str, Any] = True, dmp: bool | Mapping[str, Any] = True,
                    terminal: Mapping[str, Any] | None = None) -> SimulatedWorld:
    """A (not yet started) SimulatedWorld for `what`; SimulatorsMissing without the simulators.

    mail, dmp and terminal are True/False or the fields of simulators/world.py's MailOptions,
    DmpOptions and TerminalOptions.
    """
    require_simulators(what)
    world = importlib.import_module("bifente.simulators.world")
    return world.SimulatedWorld(  # type: ignore[no-any-return]
        cps, vitale, cards=world.CardsOn(cards),
        mail=mail if isinstance(mail, bool) else world.MailOptions(**mail),
        dmp=dmp if isinstance(dmp, bool) else world.DmpOptions(**dmp),
        terminal=None if terminal is None else world.TerminalOptions(**terminal))
