"""TF Serving's REST API, the subset an exported detector needs: JSON in, numpy arrays out, and back.

Pure translation without TensorFlow, so clients written for TF Serving work unchanged:
`status_response` (GET /v1/models/NAME), `metadata_response` (.../metadata),
`tf_serving_request.parse_predict_request` and `predict_response` (...:predict). Signatures are described as
`Predictor.signature_metadata()` does: name -> {"dtype": "uint8" | "float32" | "string" | ...,
"shape": [int or None], "name"}.

Request formats, as TF Serving reads them:
- row: `{"instances": [value, ...]}` (one input) or `{"instances": [{input: value, ...}, ...]}`,
  each instance WITHOUT the batch dimension; answered `{"predictions": [{output: value}, ...]}`.
- columnar: `{"inputs": value}` or `{"inputs": {input: value}}` WITH the batch dimension;
  answered `{"outputs": {output: value}}`.
A value is nested lists of numbers, or of strings and `{"b64": "..."}` objects where the input's
dtype is string (and only there, as in TF Serving). An export's batch is 1, so every instance is
run on its own (batch 1) and the outputs are stacked back; error messages follow TF Serving's wording.
"""

from __future__ import annotations

import base64
import math

import numpy as np

from cervical_tf.export.signature import SIGNATURE
from cervical_tf.serve.tf_serving_request import PredictRequest, bad_request

MODEL_VERSION = "1"
METHOD_NAME = "tensorflow/serving/predict"
# TensorFlow dtype names whose DataType enum (types.proto) is not simply "DT_" + NAME.upper().
DTYPE_ENUMS = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE"}


def status_response() -> dict:
    """GetModelStatusResponse: the one version, loaded and available."""
    return {
        "model_version_status": [
            {
                "version": MODEL_VERSION,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def metadata_response(model_name: str, signature: dict) -> dict:
    """GetModelMetadataResponse: the serving_default SignatureDef with TensorInfo-like entries."""
    signature_def = {
        "inputs": {name: _tensor_info(info) for name, info in signature["inputs"].items()},
        "outputs": {name: _tensor_info(info) for name, info in signature["outputs"].items()},
        "method_name": METHOD_NAME,
    }
    return {
        "model_spec": {"name": model_name, "signature_name": "", "version": MODEL_VERSION},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature_def}}},
    }


def predict_response(request: PredictRequest, outputs: list[dict[str, np.ndarray]]) -> dict:
    """`{"predictions": [...]}` (row) or `{"outputs": ...}` (columnar) from one output dict per run.

    Several outputs give one object per instance (row) or one object of stacked tensors
    (columnar); a single output gives its values alone, as TF Serving does.
    """
    names = sorted(outputs[0])
    if request.row:
        rows = [{name: _json_value(_unbatch(output[name])) for name in names} for output in outputs]
        return {"predictions": [row[names[0]] for row in rows] if len(names) == 1 else rows}
    stacked = {}
    for name in names:
        shapes = {output[name].shape[1:] for output in outputs}
        if len(shapes) > 1:
            raise bad_request(
                f"output {name!r} differs in shape between the instances ({sorted(shapes)}) and cannot be "
                "stacked into one tensor; send them in the row format ('instances')"
            )
        stacked[name] = _json_value(np.concatenate([output[name] for output in outputs]))
    return {"outputs": stacked[names[0]] if len(names) == 1 else stacked}


def _json_value(array: np.ndarray) -> object:
    """Nested lists for JSON: float32 as its shortest decimal (0.9, not 0.8999999761581421), like TF
    Serving; non-finite numbers as null; strings as text, or {"b64": ...} when not UTF-8."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        convert = _float
    elif array.dtype.kind in "OSU":
        convert = _text
    else:
        return array.tolist()
    values = np.empty(array.shape, dtype=object)
    values.reshape(-1)[:] = [convert(value) for value in array.reshape(-1)]
    return values.tolist()


def _float(value: np.floating) -> float | None:
    """str() of a numpy float is its shortest round-tripping decimal at its own precision."""
    return float(str(value)) if math.isfinite(value) else None


def _text(value: object) -> object:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return str(value)


def _unbatch(array: np.ndarray) -> np.ndarray:
    return array[0] if array.ndim and array.shape[0] == 1 else array


def _tensor_info(info: dict) -> dict:
    shape: list[int | None] | None = info["shape"]
    tensor_shape = (
        {"dim": [], "unknown_rank": True}
        if shape is None
        else {
            "dim": [{"size": str(-1 if size is None else size), "name": ""} for size in shape],
            "unknown_rank": False,
        }
    )
    return {
        "dtype": DTYPE_ENUMS.get(info["dtype"], "DT_" + info["dtype"].upper()),
        "tensor_shape": tensor_shape,
        "name": info["name"],
    }
