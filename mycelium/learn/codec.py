"""Tensor codecs for model exchange: fp32 (exact), fp16, int8 with a per-tensor scale.

`encode` turns named float32 arrays into ModelBlob bytes; `decode` checks the blob against the
layout we expect (fingerprint, tensor names, shapes, byte lengths, finite values) before any number
from the network reaches a model. Pure numpy + protobuf.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from mycelium.errors import ConfigError, InvalidMessage
from mycelium.learn import Weights
from mycelium.proto import decode_exact
from mycelium.proto import mycelium_pb2 as pb


@dataclass(frozen=True)
class Codec:
    name: str
    wire: int  # pb.Codec value
    encode: Callable[[np.ndarray], tuple[bytes, float]]
    decode: Callable[[bytes, float, int], np.ndarray]
    bytes_per_value: int


def _fp32_encode(values: np.ndarray) -> tuple[bytes, float]:
    return values.astype("<f4").tobytes(), 0.0


def _fp32_decode(data: bytes, scale: float, count: int) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4", count=count).astype(np.float32)


def _fp16_encode(values: np.ndarray) -> tuple[bytes, float]:
    return values.astype("<f2").tobytes(), 0.0


def _fp16_decode(data: bytes, scale: float, count: int) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2", count=count).astype(np.float32)


def _int8_encode(values: np.ndarray) -> tuple[bytes, float]:
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    quantized = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    return quantized.tobytes(), scale


def _int8_decode(data: bytes, scale: float, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):  # a hostile scale overflows to inf, which `decode` refuses
        return np.frombuffer(data, dtype=np.int8, count=count).astype(np.float32) * np.float32(scale)


CODECS: dict[str, Codec] = {
    "fp32": Codec("fp32", pb.CODEC_FP32, _fp32_encode, _fp32_decode, 4),
    "fp16": Codec("fp16", pb.CODEC_FP16, _fp16_encode, _fp16_decode, 2),
    "int8": Codec("int8", pb.CODEC_INT8, _int8_encode, _int8_decode, 1),
}
_BY_WIRE = {codec.wire: codec for codec in CODECS.values()}


def get_codec(name: str) -> Codec:
    if name not in CODECS:
        raise ConfigError(f"unknown codec {name!r}; choose one of {', '.join(CODECS)}")
    return CODECS[name]


def encode(weights: Mapping[str, np.ndarray], codec: Codec, model_fingerprint: str) -> bytes:
    blob = pb.ModelBlob(model_fingerprint=model_fingerprint)
    for name, values in weights.items():
        data, scale = codec.encode(np.asarray(values, dtype=np.float32).ravel())
        blob.tensors.append(
            pb.TensorBlob(name=name, shape=list(values.shape), codec=codec.wire, scale=scale, data=data)
        )
    return blob.SerializeToString(deterministic=True)


def decode(data: bytes, model_fingerprint: str, shapes: Mapping[str, tuple[int, ...]]) -> Weights:
    """Decode a blob that must match `model_fingerprint` and exactly the tensor `shapes`."""
    blob = decode_exact(pb.ModelBlob, data)
    if blob.model_fingerprint != model_fingerprint:
        raise InvalidMessage(
            f"model fingerprint {blob.model_fingerprint[:40]!r} differs from ours ({model_fingerprint})"
        )
    if [t.name for t in blob.tensors] != list(shapes):
        raise InvalidMessage("tensor names differ from our model's")
    weights: Weights = OrderedDict()
    for tensor in blob.tensors:
        shape = tuple(shapes[tensor.name])
        if tuple(tensor.shape) != shape:
            raise InvalidMessage(f"tensor {tensor.name} has shape {tuple(tensor.shape)}, expected {shape}")
        codec = _BY_WIRE.get(tensor.codec)
        if codec is None:
            raise InvalidMessage(f"unknown codec {tensor.codec} for tensor {tensor.name}")
        count = int(np.prod(shape))
        if len(tensor.data) != count * codec.bytes_per_value:
            expected = count * codec.bytes_per_value
            raise InvalidMessage(f"tensor {tensor.name} holds {len(tensor.data)} bytes, expected {expected}")
        if not np.isfinite(tensor.scale):
            raise InvalidMessage(f"tensor {tensor.name} has a non-finite scale")
        values = codec.decode(tensor.data, tensor.scale, count).reshape(shape)
        if not np.all(np.isfinite(values)):
            raise InvalidMessage(f"tensor {tensor.name} holds NaN or infinite values")
        weights[tensor.name] = values
    return weights
