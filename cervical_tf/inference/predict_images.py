"""`cervical-tf predict`'s work: run an export on image files and write every result format."""

from __future__ import annotations

import glob
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.boxes import AGNOSTIC_NMS
from cervical_tf.errors import DataError
from cervical_tf.export.model_card import MODEL_CARD, warn_if_synthetic, write_model_card
from cervical_tf.slides.reader import SLIDE_SUFFIXES, is_slide
from tfrecords_gen.image_files import IMAGE_SUFFIXES, is_image_file

if TYPE_CHECKING:
    from cervical_tf.evaluation.coco_ids import CocoIds
    from cervical_tf.inference.detections import Detections
    from cervical_tf.inference.predictor import Predictor

OUTPUT_FILES = ("detections.json", "detections.csv", "detections.geojson", "coco_results.json", MODEL_CARD)


def predict_images(
    model: Path,
    output: Path,
    images: list[str],
    *,
    min_score: float = 0.5,
    max_detections: int = 100,
    tile: int | None = None,
    overlap: int = 128,
    agnostic_nms: bool = AGNOSTIC_NMS,
    coco_gt: Path | None = None,
    mpp: float | None = None,
    tissue_mask: bool = True,
    abnormal: str | None = None,
    gallery: int = 16,
    ray: str | None = None,
) -> None:
    """Predict on every image of `images` (files, folders, globs); skip (and report) unreadable ones;
    write detections.json/.csv/.geojson, coco_results.json, model_card.json and overlays/ into `output`.

    Whole slides among them (`slides.reader.is_slide`: SVS, NDPI, MRXS, tiled or OME TIFF, ...) are
    read tile by tile at the model's pixel size (`mpp`: µm per level-0 pixel when the slide's
    metadata lacks it or is wrong; `tissue_mask`: skip tiles without tissue) by
    `slides.batch.predict_slides`, each into OUTPUT/<slide>/; `tile` and `overlap` then default to
    the model's input size and apply in model pixels, `max_detections` per tile. Each slide gets a
    report with its slide score from the abnormal classes (`abnormal`: comma-separated names, default
    `inference.abnormal.default_abnormal`'s) and a gallery of its top `gallery` abnormal cells; the
    batch gets OUTPUT/slides_ranked.csv/.md. A slide that fails is listed in OUTPUT/slides_failed.csv
    and last in the ranked table, the others go on, and the run ends with a DataError (exit status 2)
    naming how many failed.

    The export's model card goes with the results: copied as model_card.json, as the GeoJSON's
    "model_card" member, in each overlay's PNG text; its warning (a model trained on synthetic
    images) also on each detections.json entry, across each overlay, and on the terminal.

    coco_results.json numbers images 1..N in argument order and classes by the model's label map;
    with `coco_gt` (a converted folder or a `*_coco.json`) it uses that ground truth's image ids
    (matched by file_name) and category ids (matched by name), so pycocotools can score it there.

    With `ray` (a Ray address: "local" starts a local instance, "auto" or the head's "HOST:PORT" joins
    the cluster this machine is a node of) the images and the slides' tiles are spread over Ray
    actors, one model each (`distributed.ray_predict`); the results and their files are the same.
    """
    from cervical_tf.evaluation.coco_ids import load_coco_ids
    from cervical_tf.inference.abnormal import abnormal_classes
    from cervical_tf.inference.predictor import Predictor, validate_options
    from cervical_tf.slides.batch import BATCH_FILES, FAILED_TABLE, predict_slides
    from cervical_tf.slides.detect import SlideOptions
    from cervical_tf.slides.report import Triage

    validate_options(tile, overlap, max_detections, min_score)
    if mpp is not None and not mpp > 0:
        raise DataError(f"--mpp must be a positive number of microns per pixel, got {mpp}")
    if gallery < 0:
        raise DataError(f"--gallery must be 0 (no gallery) or more cells, got {gallery}")
    if ray is not None:
        from cervical_tf.distributed.ray_predict import require_ray

        require_ray()
    found = resolve_images(images)
    slides = [path for path in found if is_slide(path)]
    paths = [path for path in found if path not in slides]
    if coco_gt is not None and not paths:
        raise DataError("--coco-gt numbers images for COCO scoring; only slides were given")
    coco_ids = load_coco_ids(Path(coco_gt)) if coco_gt is not None else None
    file_names = coco_ids.match_images(paths) if coco_ids else {}
    predictor = Predictor.load(Path(model))
    card = predictor.model_card
    print(f"model: {card.summary}")
    output = Path(output)
    options = SlideOptions(tile, overlap, min_score, max_detections, agnostic_nms, mpp, tissue_mask)
    pairs = list(zip(slides, slide_folder_names(slides), strict=True))
    run = {"tile": tile, "overlap": overlap, "max_detections": max_detections, "min_score": min_score}
    run["agnostic_nms"] = agnostic_nms
    fields = [
        (path, output / "overlays" / name) for path, name in zip(paths, overlay_names(paths), strict=True)
    ]
    on_ray, planned = None, {}
    if ray is not None:  # one actor pool for the batch: tiles into each slide's tiles.jsonl, fields back
        from cervical_tf.distributed.ray_predict import RayPool

        on_ray, planned = RayPool.connect(ray, Path(model)).detect(
            predictor, pairs, output, options, fields, run
        )
    failed_slides = []
    if slides:
        chosen, rule = abnormal_classes(abnormal, predictor.labels)
        triage = Triage(frozenset(chosen), rule, gallery)
        failed_slides = predict_slides(predictor, pairs, output, options, triage, planned)
        write_model_card(output / MODEL_CARD, card)
        print(f"wrote {', '.join(BATCH_FILES)}, {FAILED_TABLE} and {MODEL_CARD} to {output}/")
    if paths:
        _predict_fields(predictor, output, fields, coco_ids, file_names, run, on_ray)
    warn_if_synthetic(card)
    if failed_slides:
        named = ", ".join(str(failure.slide) for failure in failed_slides)
        raise DataError(
            f"{len(failed_slides)} of {len(slides)} slide(s) could not be read: {named} "
            f"(reasons in {output / FAILED_TABLE})"
        )


def _predict_fields(
    predictor: Predictor,
    output: Path,
    fields: list[tuple[Path, Path]],
    coco_ids: CocoIds | None,
    file_names: dict[str, str],
    run: dict,
    done: list[tuple[Path, Detections | DataError]] | None = None,
) -> None:
    """Ordinary images (fields: (image path, overlay path)): each decoded whole, detected with `run`
    (Predictor.predict's keyword options), its overlay (`predict_field`), then the batch's result
    files. `done`: the fields' results already computed (on Ray), in order, instead."""
    from tqdm import tqdm

    from cervical_tf.inference import outputs

    card = predictor.model_card
    category_ids = coco_ids.category_ids(predictor.labels) if coco_ids else None
    paths = [path for path, _ in fields]
    if coco_ids:
        image_ids = {path: coco_ids.images[file_name].id for path, file_name in file_names.items()}
        ids_note = f"image and category ids of {coco_ids.source}"
    else:
        image_ids = {str(path): image_id for image_id, path in enumerate(paths, start=1)}
        ids_note = (
            f"image ids 1..{len(paths)} in argument order, label-map category ids; --coco-gt for convert's"
        )
    detections_list: list[Detections] = []
    failures: list[Path] = []
    results = (
        done
        if done is not None
        else (_field_or_error(predictor, path, overlay_path, run) for path, overlay_path in fields)
    )
    for path, result in tqdm(results, total=len(fields), desc="predict", unit="img"):
        if isinstance(result, DataError):
            failures.append(path)
            tqdm.write(f"skipped: {result}", file=sys.stderr)
            continue
        if coco_ids:
            coco_ids.check_size(file_names[str(path)], path, result.width, result.height)
        detections_list.append(result)
    if not detections_list:
        raise DataError(f"none of the {len(paths)} image(s) could be read; nothing was written")
    outputs.write_detections_json(output / "detections.json", detections_list, card.warning)
    outputs.write_detections_csv(output / "detections.csv", detections_list)
    outputs.write_geojson(output / "detections.geojson", detections_list, card.as_json())
    outputs.write_coco_results(output / "coco_results.json", detections_list, image_ids, category_ids)
    write_model_card(output / MODEL_CARD, card)
    table = outputs.counts_table(detections_list, predictor.labels)
    _report(output, detections_list, failures, table, ids_note)


def predict_field(predictor: Predictor, path: Path, overlay_path: Path, run: dict) -> Detections:
    """Decode the image at `path` whole, detect (`run`: Predictor.predict's keyword options) and write
    its overlay to `overlay_path`. DataError (naming the file) when it cannot be decoded."""
    from cervical_tf.images import load_image
    from cervical_tf.inference import outputs

    image = load_image(path)
    detections = predictor.predict(image, str(path), **run)
    card = predictor.model_card
    overlay_path.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_overlay(
        overlay_path,
        image,
        detections,
        outputs.palette(predictor.labels),
        model_summary=card.summary,
        model_warning=card.warning,
    )
    return detections


def _field_or_error(
    predictor: Predictor, path: Path, overlay_path: Path, run: dict
) -> tuple[Path, Detections | DataError]:
    try:
        return path, predict_field(predictor, path, overlay_path, run)
    except DataError as error:
        return path, error


def resolve_images(items: list[str]) -> list[Path]:
    """Image and slide paths from files, folders (their images and slides, not recursive) and glob
    patterns, in order.

    Duplicates are kept once. A missing file, a pattern matching no image, or a folder without
    images is a DataError naming it. Files given by name are taken whatever their suffix.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if glob.has_magic(item):
            found = [Path(match) for match in sorted(glob.glob(item)) if _is_image_or_slide(Path(match))]
            if not found:
                raise DataError(f"{item}: the pattern matches no image files")
        elif path.is_dir():
            found = sorted(match for match in path.iterdir() if _is_image_or_slide(match))
            if not found:
                suffixes = " ".join(sorted(IMAGE_SUFFIXES | SLIDE_SUFFIXES))
                raise DataError(f"{path}: no image files in this folder (looked for {suffixes})")
        elif path.is_file():
            found = [path]
        else:
            raise DataError(f"{path}: no such image file or folder")
        paths.extend(found)
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _is_image_or_slide(path: Path) -> bool:
    return is_image_file(path) or (path.is_file() and path.suffix.lower() in SLIDE_SUFFIXES)


def slide_folder_names(slides: list[Path]) -> list[str]:
    """The folder of each slide's results under OUTPUT: its overlay name without `.png`, so that
    slides sharing a stem get distinct folders (`serve --slide-results` finds them by this name)."""
    return [Path(name).stem for name in overlay_names(slides)]


def overlay_names(paths: list[Path]) -> list[str]:
    """`<stem>.png` per image; a stem that several images share gets its folder's name in front
    (`im_Parabasal_004.png`, as in SIPaKMeD's class folders), then `-2`, `-3`, ... if still shared."""
    stems = Counter(path.stem for path in paths)
    used: set[str] = set()
    names = []
    for path in paths:
        base = f"{path.parent.name}_{path.stem}" if stems[path.stem] > 1 else path.stem
        name, number = f"{base}.png", 1
        while name in used:
            number += 1
            name = f"{base}-{number}.png"
        used.add(name)
        names.append(name)
    return names


def _report(
    output: Path, detections_list: list[Detections], failures: list[Path], table: str, ids_note: str
) -> None:
    print(table)
    boxes = sum(len(detections) for detections in detections_list)
    if failures:
        print(
            f"skipped {len(failures)} unreadable image(s): {', '.join(map(str, failures))}", file=sys.stderr
        )
    print(f"{boxes} detections in {len(detections_list)} image(s)")
    print(f"wrote {', '.join(OUTPUT_FILES)} to {output}/ (coco_results.json: {ids_note})")
    print(f"wrote {len(detections_list)} overlay(s) to {output / 'overlays'}/")
