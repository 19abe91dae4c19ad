"""Which classes are abnormal: named with --abnormal, or implied by a SIPaKMeD or Bethesda label map.

Used by evaluation (screening metrics), the server (/v1/detect's abnormal flag) and every later
consumer that ranks abnormal cells.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from cervical_tf.errors import DataError

# Class names of the two label sets whose abnormal classes are known; compared lower-cased with
# everything but letters and digits dropped, so "ASC-US", "ASCUS" and "asc_us" are the same name.
SIPAKMED_CLASSES = {"superficialintermediate", "parabasal", "koilocytotic", "dyskeratotic", "metaplastic"}
SIPAKMED_ABNORMAL = {"koilocytotic", "dyskeratotic"}
BETHESDA_NEGATIVE = {
    "nilm",
    "negativeforintraepitheliallesion",
    "negativeforintraepitheliallesionormalignancy",
}
BETHESDA_ABNORMAL = {"ascus", "asch", "lsil", "hsil", "scc", "agc", "ais", "adenocarcinoma"}


def abnormal_classes(requested: str | None, labels: dict[int, str]) -> tuple[set[str], str]:
    """--abnormal NAME,... checked against the label map, or the default for its class names."""
    if requested is None:
        return default_abnormal(list(labels.values()))
    names = [name.strip() for name in requested.split(",") if name.strip()]
    for name in names:
        if name not in labels.values():
            close = difflib.get_close_matches(name, list(labels.values()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"--abnormal: {name!r} is not a class of the model ({sorted(labels.values())}){hint}"
            )
    return set(names), "given with --abnormal"


def default_abnormal(names: Sequence[str]) -> tuple[set[str], str]:
    """The abnormal classes implied by a label map's class names, and a sentence saying why.

    All names SIPaKMeD classes: Koilocytotic and Dyskeratotic. All names Bethesda categories:
    every class but NILM ("Negative for intraepithelial lesion"). Otherwise none: the caller
    must name them (--abnormal).
    """
    by_key = {_name_key(name): name for name in names}
    if by_key and set(by_key) <= SIPAKMED_CLASSES and set(by_key) & SIPAKMED_ABNORMAL:
        chosen = {by_key[key] for key in SIPAKMED_ABNORMAL & set(by_key)}
        return chosen, "SIPaKMeD label map: the abnormal classes are Koilocytotic and Dyskeratotic"
    if by_key and set(by_key) <= BETHESDA_NEGATIVE | BETHESDA_ABNORMAL and set(by_key) & BETHESDA_ABNORMAL:
        chosen = {name for key, name in by_key.items() if key not in BETHESDA_NEGATIVE}
        return chosen, "Bethesda label map: every class except NILM (negative for intraepithelial lesion)"
    return set(), (
        "no abnormal classes: the label map holds neither SIPaKMeD nor Bethesda class names; "
        "name them with --abnormal NAME,..."
    )


def _name_key(name: str) -> str:
    return "".join(character for character in name.lower() if character.isalnum())
