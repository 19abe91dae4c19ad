"""What a model knows: EXPORT/model_card.json, written by `cervical-tf export`, shown by every user of it.

A detector trained on the synthetic sample labels real cells with high scores, and nothing in its
boxes says it never saw one. So the export records what the model learned from (`provenance.py`
builds it), and predict, evaluate, serve and the viewer show it, with `warning` wherever the
training images were drawn. The facts (card_version 1):

- `exported` (UTC, ISO 8601), `project_version`, `classes` (label-map order)
- `training_data`: `folder` (the converted folder trained on), `splits` {split: {"images",
  "boxes", "classes": {name: boxes}}} from its dataset_stats.json (or None), `synthetic_sample`
  "all" | "some" | "none" | "unknown" (of the training images) and `synthetic_images`
  {split: count}, and a `note` when something could not be known
- `pixel_size_um`: µm per pixel of the training images (`convert --mpp`, carried by train in
  MODEL_DIR/pixel_size.json), None when unknown; predict reads slides at it. `pixel_size_note` says
  where it came from or why it is unknown
- `recipe`: `config` (the --pipeline_config_path given at export, else None), `backbone`,
  `decoder`, `input_size`, `init_checkpoint` (None: from scratch), `batch_size`
- `training`: `steps` (the exported checkpoint's), `planned_steps`, `checkpoint`
- `validation`: {"step", "AP", "AP50"} of metrics.csv's last evaluation up to `steps`, or None

An export without a card (older, or not written by this project) still loads: its card is
"unknown provenance", which every output says.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.atomic import atomic_path

MODEL_CARD = "model_card.json"
CARD_VERSION = 1
SYNTHETIC_WARNING = "trained on synthetic images only: not for real slides"
PARTLY_SYNTHETIC_WARNING = "trained partly on synthetic images: check it on real slides before use"


@dataclass(frozen=True)
class ModelCard:
    """An export's model card: `facts` as written ({} when the export has none), and its file."""

    facts: dict
    path: Path

    @classmethod
    def load(cls, export_dir: Path) -> ModelCard:
        """EXPORT_DIR's card; DataError when the file exists but is not a card."""
        path = Path(export_dir) / MODEL_CARD
        if not path.exists():
            return cls({}, path)
        try:
            facts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: cannot read the model card ({error}); export again") from error
        if not isinstance(facts, dict) or not isinstance(facts.get("card_version"), int):
            raise DataError(f"{path}: not a model card `cervical-tf export` wrote; export again")
        return cls({key: value for key, value in facts.items() if key not in ("summary", "warning")}, path)

    @property
    def known(self) -> bool:
        return bool(self.facts)

    @property
    def synthetic(self) -> str:
        """Of the training images: "all", "some" or "none" drawn by `cervical-tf sample`, or "unknown"."""
        return (self.facts.get("training_data") or {}).get("synthetic_sample", "unknown")

    @property
    def warning(self) -> str | None:
        """What a user must read before trusting a box, or None."""
        return {"all": SYNTHETIC_WARNING, "some": PARTLY_SYNTHETIC_WARNING}.get(self.synthetic)

    @property
    def summary(self) -> str:
        """One line: data, recipe, steps, validation AP, pixel size, date (or "unknown provenance")."""
        if not self.known:
            return (
                f"unknown provenance: no {MODEL_CARD} in {self.path.parent} (exported before model cards, "
                "or not by `cervical-tf export`): nothing says what this model was trained on"
            )
        parts = [_recipe_text(self.facts.get("recipe") or {}), _data_text(self.facts)]
        validation = self.facts.get("validation")
        if validation:
            parts.append(
                f"validation AP {_number(validation.get('AP'))}, AP50 {_number(validation.get('AP50'))} "
                f"at step {validation.get('step')}"
            )
        else:
            parts.append("no validation AP recorded")
        size = self.facts.get("pixel_size_um")
        parts.append("pixel size unknown" if size is None else f"pixel size {size} µm")
        parts.append(
            f"exported {str(self.facts.get('exported', '?'))[:10]} by cervical-tf "
            f"{self.facts.get('project_version', '?')}"
        )
        lead = f"{self.warning.upper()}. " if self.warning else ""
        return lead + "; ".join(parts)

    def as_json(self) -> dict:
        """The card for JSON outputs: the facts plus `summary` and `warning` (None when there is none)."""
        facts = self.facts if self.known else {"provenance": "unknown"}
        return {**facts, "summary": self.summary, "warning": self.warning}


def write_model_card(path: Path, card: ModelCard) -> None:
    """`card.as_json()` to `path`, atomically: export's card, and the copy beside predict's results."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(card.as_json(), indent=2) + "\n", encoding="utf-8")


def warn_if_synthetic(card: ModelCard) -> None:
    """A run's last line on the terminal (stderr) when the model learned from drawn images."""
    if card.warning:
        print(f"warning: the model was {card.warning} ({card.path})", file=sys.stderr)


def _recipe_text(recipe: dict) -> str:
    size = recipe.get("input_size") or []
    text = f"{recipe.get('backbone', '?')} + {recipe.get('decoder', '?')} at {'x'.join(map(str, size[:2]))}"
    return text + (f" ({Path(recipe['config']).name})" if recipe.get("config") else "")


def _data_text(facts: dict) -> str:
    training, data = facts.get("training") or {}, facts.get("training_data") or {}
    steps = f"{training.get('steps', '?')} steps"
    train = (data.get("splits") or {}).get("train")
    if train is None:
        return f"{steps} on {data.get('folder') or 'unknown data'} (counts unknown)"
    kind = {"all": "synthetic sample", "some": "partly synthetic", "none": "real images"}
    what = kind.get(data.get("synthetic_sample"), "real or synthetic: unknown")
    return (
        f"{steps} on {data.get('folder')}: {train['images']} train images, {train['boxes']} boxes, "
        f"{len(train['classes'])} classes ({what})"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
