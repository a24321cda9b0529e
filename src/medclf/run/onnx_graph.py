"""The pieces every family's ONNX graph shares (medclf.run.family.Family.onnx_graph): the uint8
``images`` input, the ``probabilities`` output, the flat-pixel scaling nodes, checked
serialisation; and the optional onnx extra, imported where used (it is ~115 MB, not every
install has it)."""

from __future__ import annotations

import importlib

import numpy as np

from medclf.errors import ConfigError

OPSET = 17
EXTRA = 'pip install -e ".[onnx]"'


def need(module: str):
    """Import an optional package of the onnx extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs the optional onnx extra ({module} is missing); "
            f"install it with {EXTRA}"
        ) from err


def input_info(metrics: dict):
    from onnx import TensorProto, helper

    shape = ["n", *metrics["image_shape"]]
    return helper.make_tensor_value_info("images", TensorProto.UINT8, shape)


def output_info(n_outputs: int, elem_type):
    from onnx import helper

    return helper.make_tensor_value_info("probabilities", elem_type, ["n", n_outputs])


def flat_nodes(n_features: int, np_dtype, name: str) -> tuple[list, list]:
    """Nodes from ``images`` to ``name``: (n, n_features) pixels / 256 in ``np_dtype``."""
    from onnx import helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    inits = [
        numpy_helper.from_array(np.array([-1, n_features], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array(256, np_dtype), "pixel_scale"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["pixels"], to=elem),
        helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]),
        helper.make_node("Div", ["flat", "pixel_scale"], [name]),
    ]
    return nodes, inits


def serialise(graph, opsets) -> bytes:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=opsets, producer_name="medclf")
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime >= 1.16
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
