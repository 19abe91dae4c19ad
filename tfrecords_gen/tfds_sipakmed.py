"""A TensorFlow Datasets builder for SIPaKMeD, from a manual download folder.

SIPaKMeD needs a login to download, so the builder reads the folder the user unpacked it into
(`manual_dir`). It goes through the same reader, validation and split as `cervical-tf convert`
(defaults: 15% val, 15% test, seed 0), so it yields the same images, boxes and splits.

Label ids are those of the label_map.pbtxt `convert` writes for SIPaKMeD: 1..5 in sorted
class-name order, with 0 reserved for the background, as official.vision expects. The ClassLabel's
names are ["background", *classes in label-map order], so `names[id]` is the class of label-map
id `id`. `convert` numbers the classes it finds, so the two maps are identical for SIPaKMeD as
published (all five classes); for a folder with fewer classes, give `convert --label-map` a
five-class map to keep the ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from cervical_tf.errors import DataError
from tfrecords_gen.label_map import build_label_map
from tfrecords_gen.readers.sipakmed import CLASS_NAMES
from tfrecords_gen.readers.sipakmed import read as read_sipakmed
from tfrecords_gen.records import ImageRecord, ReaderInput
from tfrecords_gen.split import split_by_fractions
from tfrecords_gen.validate import validate

VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
SPLIT_SEED = 0
TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test"}
LABEL_MAP = build_label_map(CLASS_NAMES)
# Index == label-map id: the background takes index 0, which no box uses.
LABEL_NAMES = ("background", *sorted(LABEL_MAP, key=LABEL_MAP.__getitem__))


class Sipakmed(tfds.core.GeneratorBasedBuilder):
    """SIPaKMeD cluster images with one box per annotated cell (from its cytoplasm boundary)."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Cluster images with cell boxes from the cytoplasm .dat boundaries.",
        "2.0.0": "Label ids are label_map.pbtxt's (1..5, sorted names; 0 = background), as in convert.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download SIPaKMeD (the five im_<Class> archives from the authors' page, or the Kaggle mirror), "
        "unpack them into one folder and pass it as manual_dir. Both the single and the doubly nested "
        "im_<Class>/im_<Class>/ layouts are accepted; CROPPED/ folders are ignored."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "image/filename": tfds.features.Text(),
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),  # normalized [ymin, xmin, ymax, xmax]
                            "label": tfds.features.ClassLabel(names=LABEL_NAMES),
                        }
                    ),
                }
            ),
            supervised_keys=None,
            homepage="https://www.cs.uoi.gr/~marina/sipakmed.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        records = checked_records(Path(dl_manager.manual_dir))
        assignment = split_by_fractions(records, VAL_FRACTION, TEST_FRACTION, SPLIT_SEED)
        return {
            tfds_name: self._generate_examples([r for r in records if assignment[r.name] == split])
            for split, tfds_name in TFDS_SPLITS.items()
        }

    def _generate_examples(self, records: list[ImageRecord]):
        for record in records:
            size = np.array([record.height, record.width, record.height, record.width], dtype=np.float32)
            yield (
                record.name,
                {
                    "image": str(record.image_path),
                    "image/filename": record.name,
                    "objects": {
                        "bbox": [
                            tfds.features.BBox(*(np.array([b.y_min, b.x_min, b.y_max, b.x_max]) / size))
                            for b in record.boxes
                        ],
                        "label": [box.label for box in record.boxes],
                    },
                },
            )


def checked_records(folder: Path) -> list[ImageRecord]:
    """The validated records of a SIPaKMeD folder; any problem stops the build with the full list."""
    # One process: a TFDS build is often started from a script without a __main__ guard, where
    # spawning workers would re-run the script.
    validated = validate(read_sipakmed(ReaderInput(folder)), workers=1, progress=False)
    if validated.fatal:
        listing = "\n".join(str(problem) for problem in validated.fatal)
        raise DataError(f"{folder}: {len(validated.fatal)} problem(s) in SIPaKMeD:\n{listing}")
    return validated.records
