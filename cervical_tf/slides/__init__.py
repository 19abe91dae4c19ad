"""Whole-slide images: open them (`reader`, `tiff_reader`), find the tissue (`tissue`), plan the
level, scale and tiles at the model's pixel size (`plan`), stream the tiles through the model
(`stream`, `detect`), record finished tiles so an interrupted slide resumes (`tile_log`), and write
each slide's outputs (`batch.predict_slides`, called by `cervical-tf predict`): its report and score
(`report`), the gallery of its top abnormal cells (`gallery`), and the batch's ranked table (`ranking`)."""
