"""TF Serving's predict request, JSON in, numpy arrays out (see tf_serving.py for the formats).

Pure translation without TensorFlow; error messages follow TF Serving's wording.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from cervical_tf.export.signature import SIGNATURE
from cervical_tf.serve.limits import RequestError


@dataclass(frozen=True)
class PredictRequest:
    """A parsed predict request: `row` (instances) or columnar (inputs); `runs`, one dict per
    batch row of input name -> array with a batch dimension of 1, ready for `run_signature`."""

    row: bool
    runs: list[dict[str, np.ndarray]]


def parse_predict_request(body: bytes, signature: dict) -> PredictRequest:
    """The JSON body of a predict request -> PredictRequest; RequestError 400 saying what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"JSON Parse error: {error}") from error
    if not isinstance(document, dict):
        raise bad_request(f"JSON Value: {_show(document)} Is not object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise bad_request("'signature_name' key must be a string value.")
    if signature_name not in ("", SIGNATURE):
        raise bad_request(f'Serving signature name: "{signature_name}" not found in signature def')
    if "instances" in document and "inputs" in document:
        raise bad_request(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    inputs = signature["inputs"]
    if "instances" in document:
        return PredictRequest(row=True, runs=_parse_instances(document["instances"], inputs))
    if "inputs" in document:
        return PredictRequest(row=False, runs=_parse_inputs(document["inputs"], inputs))
    raise bad_request("Missing 'inputs' or 'instances' key")


def _parse_instances(instances: object, inputs: dict) -> list[dict[str, np.ndarray]]:
    if not isinstance(instances, list):
        raise bad_request("Expecting 'instances' to be an list/array")
    if not instances:
        raise bad_request("No values in 'instances' array")
    named = _is_named(instances[0])
    if not named and len(inputs) > 1:
        raise bad_request(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    runs = []
    for index, instance in enumerate(instances):
        if named != _is_named(instance):
            expected = "object" if named else "value/list"
            raise bad_request(
                f"Expecting {expected} but got {_json_type(instance)} at item {index} of input list"
            )
        values = instance if named else {next(iter(inputs)): instance}
        if set(values) != set(inputs):
            raise bad_request(
                f"Failed to process element: {index} of 'instances' list. JSON object: {_show(instance)} "
                f"keys must be equal to: {','.join(sorted(inputs))}"
            )
        try:
            runs.append(
                {
                    name: _tensor(value, inputs[name], batched=False)[np.newaxis]
                    for name, value in values.items()
                }
            )
        except RequestError as error:
            raise bad_request(
                f"Failed to process element: {index} of 'instances' list. Error: {error}"
            ) from error
    return runs


def _parse_inputs(value: object, inputs: dict) -> list[dict[str, np.ndarray]]:
    if not _is_named(value):
        if len(inputs) > 1:
            raise bad_request(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        value = {next(iter(inputs)): value}
    missing = [name for name in inputs if name not in value]
    if missing:
        raise bad_request(f"Missing named input: {missing[0]} in 'inputs' object.")
    tensors = {name: _tensor(value[name], info, batched=True) for name, info in inputs.items()}
    batch_sizes = {tensor.shape[0] for tensor in tensors.values()}
    if len(batch_sizes) > 1 or 0 in batch_sizes:
        raise bad_request(
            f"the inputs need one shared, non-zero batch size (first dimension), got {sorted(batch_sizes)}"
        )
    return [
        {name: tensor[row : row + 1] for name, tensor in tensors.items()} for row in range(batch_sizes.pop())
    ]


def _tensor(value: object, info: dict, batched: bool) -> np.ndarray:
    """A JSON value -> an array of the input's dtype whose shape fits the input; RequestError 400
    naming the offending value otherwise. `batched`: the value has a batch dimension of any size
    (an export's batch is 1, but each batch row is run on its own); else it is one instance."""
    dtype = info["dtype"]
    array = _string_array(value) if dtype == "string" else _numeric_array(value, dtype)
    if info["shape"] is None:
        return array
    expected = ([None] if batched else []) + info["shape"][1:]
    if len(expected) != array.ndim or any(
        size is not None and size != got for size, got in zip(expected, array.shape, strict=True)
    ):
        per = " (a batch)" if batched else " per instance (the batch dimension is implied)"
        raise bad_request(
            f"input '{info['name']}' expects shape {_shape_text(expected)}{per}, -1 meaning any size; "
            f"got {list(array.shape)}"
        )
    return array


def _numeric_array(value: object, dtype: str) -> np.ndarray:
    try:
        array = np.array(value)
    except ValueError as error:  # ragged lists
        raise bad_request(
            f"Encountered list at unexpected size: the nested lists are not rectangular ({error})"
        ) from error
    target = np.dtype(dtype)
    kind = array.dtype.kind
    if kind in "iu" and target.kind in "iu":
        limits = np.iinfo(target)
        outside = np.flatnonzero((array < limits.min) | (array > limits.max))
        if len(outside):
            raise _type_error(array.flat[outside[0]].item(), dtype)
        return array.astype(target)
    if (kind in "iuf" and target.kind == "f") or (kind == "b" and target.kind == "b"):
        return array.astype(target)
    if array.size == 0:
        return array.astype(target)
    if kind == "f":  # an integer input given decimals: TF Serving refuses even 3.0
        first = array.flat[np.flatnonzero(array != np.floor(array))[:1].tolist() or [0]][0]
    else:
        first = next((leaf for leaf in array.flat if not _is_number(leaf)), array.flat[0])
    raise _type_error(first.item() if isinstance(first, np.generic) else first, dtype)


def _string_array(value: object) -> np.ndarray:
    def convert(item: object) -> object:
        if isinstance(item, list):
            return [convert(element) for element in item]
        if isinstance(item, str):
            return item.encode("utf-8")
        if isinstance(item, dict) and _is_base64(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except binascii.Error as error:
                raise bad_request("Unable to base64 decode") from error
        raise _type_error(item, "string")

    converted = convert(value)
    try:
        return np.array(converted, dtype=object)
    except ValueError as error:
        raise bad_request(
            f"Encountered list at unexpected size: the nested lists are not rectangular ({error})"
        ) from error


def _is_named(value: object) -> bool:
    """An object of input name -> value, as opposed to a value (a list, number, string or b64 object)."""
    return isinstance(value, dict) and not _is_base64(value)


def _is_base64(value: dict) -> bool:
    return len(value) == 1 and isinstance(value.get("b64"), str)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _type_error(value: object, dtype: str) -> RequestError:
    return bad_request(
        f"JSON Value: {_show(value)} Type: {_json_type(value)} is not of expected type: {dtype}"
    )


def _json_type(value: object) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "String" if isinstance(value, str) else "Number"


def _show(value: object, limit: int = 120) -> str:
    """JSON text of a value for an error message, cut short: the value may be a whole image."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


def _shape_text(shape: list[int | None]) -> str:
    return "[" + ",".join(str(-1 if size is None else size) for size in shape) + "]"
