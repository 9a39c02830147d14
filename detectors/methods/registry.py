"""The table of drift methods, by Evidently name.

An explicit dict rather than registration on import: what is available is
visible in one place and importing a method module changes nothing.
"""

from __future__ import annotations

from detectors.methods.anderson import ANDERSON
from detectors.methods.base import DriftMethod
from detectors.methods.chisquare import CHISQUARE
from detectors.methods.cramer_von_mises import CRAMER_VON_MISES
from detectors.methods.energy import ENERGY
from detectors.methods.hellinger import HELLINGER
from detectors.methods.jensenshannon import JENSENSHANNON
from detectors.methods.kl_div import KL_DIV
from detectors.methods.ks import KS
from detectors.methods.psi import PSI
from detectors.methods.wasserstein import WASSERSTEIN
from detectors.methods.ztest import Z
from detectors.summaries import ColumnType

__all__ = ["ALIASES", "METHODS", "get_method", "methods_for"]

METHODS: dict[str, DriftMethod] = {
    "ks": KS,
    "chisquare": CHISQUARE,
    "z": Z,
    "wasserstein": WASSERSTEIN,
    "psi": PSI,
    "jensenshannon": JENSENSHANNON,
    "hellinger": HELLINGER,
    "kl_div": KL_DIV,
    "anderson": ANDERSON,
    "cramer_von_mises": CRAMER_VON_MISES,
    "ed": ENERGY,
}

# Other spellings users reach for; Evidently itself only knows "ed".
ALIASES: dict[str, str] = {"energy_distance": "ed"}


def get_method(name: str) -> DriftMethod:
    """The method called ``name`` (Evidently's name, or an alias); KeyError listing the valid names otherwise."""
    key = ALIASES.get(name, name)
    try:
        return METHODS[key]
    except KeyError:
        valid = ", ".join(sorted(METHODS) + sorted(ALIASES))
        raise KeyError(f"unknown drift method {name!r}; valid names: {valid}") from None


def methods_for(column_type: ColumnType) -> list[DriftMethod]:
    """Methods Evidently allows a user to choose for this column type, in table order."""
    column_type = ColumnType(column_type)
    return [method for method in METHODS.values() if column_type in method.column_types]
