"""A Kokoro-sized text-to-speech ONNX graph with random weights, for benchmarks (no download).

Kokoro-82M (StyleTTS 2 with an iSTFTNet vocoder) cannot be rebuilt here exactly without its PyTorch
source, so :func:`make_kokoro` writes the nearest thing with the same interface and the same layer
sizes where the time goes, after Kokoro's ``config.json`` (plbert 768 x 12 shared layers, 2048 wide;
hidden 512; decoder 1024 channels; iSTFTNet upsampling 10 x 6 from 512 channels, resblock kernels
3/7/11 with dilations 1/3/5, ``n_fft`` 20, hop 5; 24 kHz):

* inputs ``input_ids`` [1, n] int64, ``style`` [1, 256], ``speed`` [1]; output ``waveform`` [samples];
* an ALBERT encoder (12 passes through one shared 768-wide layer, 12 heads), projected to 512;
* a text encoder (three 512-channel convolutions of kernel 5, a bidirectional LSTM) and a duration
  LSTM; durations are fixed (3 frames of 25 ms a phoneme token: 75 ms, about Kokoro's rate at speed 1);
* the decoder: ten 1024-channel convolutions (kernel 3) with instance norms and a style affine, then
  upsampling to 80 frames a second;
* the generator: transposed convolutions x10 (512 -> 256) and x6 (256 -> 128), each followed by three
  HiFi-GAN resblocks (kernels 3, 7, 11; dilations 1, 3, 5) plus the noise branch's resblock (7, then 11),
  a kernel-7 post convolution to ``n_fft + 2`` channels and a transposed convolution of stride 5 in
  place of the inverse STFT.

Left out: the sine source from F0 and the AdaIN details of the resblocks (cheap next to the convolutions);
about 61 M parameters against Kokoro's 82 M (the prosody predictor's F0/energy blocks are not modelled).
The voices file is an ``.npz`` of ``(510, 1, 256)`` style tables, like ``voices-v1.0.bin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KOKORO_82M", "TINY_KOKORO", "KokoroShape", "make_kokoro"]


@dataclass(frozen=True, slots=True)
class KokoroShape:
    name: str
    bert_dim: int = 768
    bert_layers: int = 12
    bert_heads: int = 12
    bert_ff: int = 2048
    hidden: int = 512
    decoder: int = 1024
    generator: int = 512
    frames_per_token: int = 3


KOKORO_82M = KokoroShape("kokoro-82m-sized")
TINY_KOKORO = KokoroShape("tiny-kokoro", 64, 2, 4, 128, 64, 64, 32)


class _Graph:
    def __init__(self, seed: int) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0
        self.params = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: np.ndarray[Any, Any], hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, name))
        if value.dtype == np.float32 and value.size > 8:
            self.params += value.size
        return name

    def weight(self, *shape: int, fan_in: int) -> str:
        return self.const(
            (self.rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)).astype(np.float32), "w"
        )

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, dilation: int = 1) -> str:
        pad = dilation * (k - 1) // 2
        w, b = self.weight(cout, cin, k, fan_in=cin * k), self.const(np.zeros(cout, np.float32), "b")
        return self.op("Conv", [x, w, b], dilations=[dilation], pads=[pad, pad], kernel_shape=[k])

    def up(self, x: str, cin: int, cout: int, k: int, stride: int) -> str:
        w, b = (
            self.weight(cin, cout, k, fan_in=cin * k // stride),
            self.const(np.zeros(cout, np.float32), "b"),
        )
        lo = (k - stride) // 2
        return self.op(
            "ConvTranspose", [x, w, b], strides=[stride], kernel_shape=[k], pads=[lo, k - stride - lo]
        )

    def leaky(self, x: str) -> str:
        return self.op("LeakyRelu", [x], alpha=0.1)

    def resblock(self, x: str, channels: int, k: int) -> str:
        for dilation in (1, 3, 5):
            y = self.conv(self.leaky(x), channels, channels, k, dilation)
            y = self.conv(self.leaky(y), channels, channels, k)
            x = self.op("Add", [x, y])
        return x

    def linear(self, x: str, cin: int, cout: int) -> str:
        y = self.op("MatMul", [x, self.weight(cin, cout, fan_in=cin)])
        return self.op("Add", [y, self.const(np.zeros(cout, np.float32), "b")])

    def layer_norm(self, x: str, dim: int) -> str:
        scale, bias = self.const(np.ones(dim, np.float32), "g"), self.const(np.zeros(dim, np.float32), "b")
        return self.op("LayerNormalization", [x, scale, bias], axis=-1)

    def lstm(self, x: str, cin: int, hidden: int) -> str:
        """Bidirectional LSTM over ``x`` [n, 1, cin] -> [n, 1, 2 * hidden]."""
        w = self.weight(2, 4 * hidden, cin, fan_in=cin)
        r = self.weight(2, 4 * hidden, hidden, fan_in=hidden)
        b = self.const(np.zeros((2, 8 * hidden), np.float32), "b")
        y = self.op("LSTM", [x, w, r, b], direction="bidirectional", hidden_size=hidden)  # [n, 2, 1, h]
        y = self.op("Transpose", [y], perm=[0, 2, 1, 3])
        return self.op("Reshape", [y, self.const(np.array([0, 1, 2 * hidden], np.int64))])


def _bert(g: _Graph, x: str, s: KokoroShape) -> str:
    """ALBERT: one layer's weights used ``bert_layers`` times (input [1, n, dim])."""
    d, heads = s.bert_dim, s.bert_heads
    head = d // heads
    shared: dict[str, Any] = {}
    split = g.const(np.array([0, 0, heads, head], np.int64))
    merge = g.const(np.array([0, 0, d], np.int64))
    scale = g.const(np.array(1 / np.sqrt(head), np.float32))
    for _ in range(s.bert_layers):
        if not shared:
            for key, (cin, cout) in {
                "q": (d, d),
                "k": (d, d),
                "v": (d, d),
                "o": (d, d),
                "up": (d, s.bert_ff),
                "down": (s.bert_ff, d),
            }.items():
                shared[key] = (g.weight(cin, cout, fan_in=cin), g.const(np.zeros(cout, np.float32), "b"))
            shared["ln"] = [
                (g.const(np.ones(d, np.float32), "g"), g.const(np.zeros(d, np.float32), "b"))
                for _ in range(2)
            ]

        def lin(v: str, key: str) -> str:
            w, b = shared[key]
            return g.op("Add", [g.op("MatMul", [v, w]), b])

        q, k, v = (g.op("Transpose", [g.op("Reshape", [lin(x, n), split])], perm=[0, 2, 1, 3]) for n in "qkv")
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        attn = g.op("Softmax", [g.op("Mul", [g.op("MatMul", [q, kt]), scale])], axis=-1)
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [attn, v])], perm=[0, 2, 1, 3]), merge])
        (g1, b1), (g2, b2) = shared["ln"]
        x = g.op("LayerNormalization", [g.op("Add", [x, lin(ctx, "o")]), g1, b1], axis=-1)
        h = lin(x, "up")  # GELU (erf form)
        gelu = g.op(
            "Mul",
            [
                h,
                g.op(
                    "Add",
                    [
                        g.op("Erf", [g.op("Mul", [h, g.const(np.array(1 / np.sqrt(2), np.float32))])]),
                        g.const(np.array(1.0, np.float32)),
                    ],
                ),
            ],
        )
        gelu = g.op("Mul", [gelu, g.const(np.array(0.5, np.float32))])
        x = g.op("LayerNormalization", [g.op("Add", [x, lin(gelu, "down")]), g2, b2], axis=-1)
    return x


def _repeat(g: _Graph, x: str, times: int) -> str:
    """[1, C, n] -> [1, C, n * times], each step repeated (fixed durations; nearest upsampling)."""
    shape = g.op("Shape", [x])
    y = g.op("Unsqueeze", [x, g.const(np.array([3], np.int64))])
    tiled = g.op("Concat", [shape, g.const(np.array([times], np.int64))], axis=0)
    y = g.op("Expand", [y, tiled])
    return g.op("Reshape", [y, g.const(np.array([0, 0, -1], np.int64))])


def _build(s: KokoroShape, seed: int) -> tuple[Any, int]:
    from onnx import TensorProto, helper

    g = _Graph(seed)
    ids = g.op("Gather", [g.weight(178, 128, fan_in=1), "input_ids"], axis=0)  # [1, n, 128]
    x = _bert(g, g.op("MatMul", [ids, g.weight(128, s.bert_dim, fan_in=128)]), s)
    x = g.linear(x, s.bert_dim, s.hidden)  # bert_encoder
    # Prosody: a duration LSTM over the BERT features (durations themselves are fixed, see above).
    seq = g.op("Transpose", [x], perm=[1, 0, 2])  # [n, 1, hidden]
    g.op("ReduceMean", [g.lstm(seq, s.hidden, s.hidden // 2)], keepdims=1)  # its cost, not its answer
    durations_ref = g.nodes[-1].output[0]
    # Text encoder: three convolutions of kernel 5 and a bidirectional LSTM.
    t = g.op("Transpose", [x], perm=[0, 2, 1])  # [1, hidden, n]
    for _ in range(3):
        t = g.leaky(
            g.op(
                "InstanceNormalization",
                [
                    g.conv(t, s.hidden, s.hidden, 5),
                    g.const(np.ones(s.hidden, np.float32), "g"),
                    g.const(np.zeros(s.hidden, np.float32), "b"),
                ],
            )
        )
    t = g.lstm(g.op("Transpose", [t], perm=[2, 0, 1]), s.hidden, s.hidden // 2)  # [n, 1, hidden]
    t = g.op(
        "Add",
        [
            g.op("Transpose", [t], perm=[1, 2, 0]),
            g.op("Mul", [durations_ref, g.const(np.array(0.0, np.float32))]),
        ],
    )
    frames = _repeat(g, t, s.frames_per_token)  # [1, hidden, frames] at 40 frames a second
    # Decoder: ten convolutions at `decoder` channels, instance norm and a style affine.
    style = g.linear("style", 256, 2 * s.decoder)
    gamma = g.op(
        "Unsqueeze",
        [
            g.op(
                "Slice",
                [
                    style,
                    g.const(np.array([0], np.int64)),
                    g.const(np.array([s.decoder], np.int64)),
                    g.const(np.array([1], np.int64)),
                ],
            ),
            g.const(np.array([2], np.int64)),
        ],
    )
    beta = g.op(
        "Unsqueeze",
        [
            g.op(
                "Slice",
                [
                    style,
                    g.const(np.array([s.decoder], np.int64)),
                    g.const(np.array([2 * s.decoder], np.int64)),
                    g.const(np.array([1], np.int64)),
                ],
            ),
            g.const(np.array([2], np.int64)),
        ],
    )
    y = g.conv(frames, s.hidden, s.decoder, 3)
    for _ in range(9):
        norm = g.op(
            "InstanceNormalization",
            [y, g.const(np.ones(s.decoder, np.float32), "g"), g.const(np.zeros(s.decoder, np.float32), "b")],
        )
        y = g.op(
            "Add",
            [y, g.conv(g.leaky(g.op("Add", [g.op("Mul", [norm, gamma]), beta])), s.decoder, s.decoder, 3)],
        )
    y = _repeat(g, g.conv(y, s.decoder, s.generator, 1), 2)  # 80 frames a second
    # Generator (iSTFTNet): x10 then x6, resblocks after each, post conv, then the "iSTFT".
    c = s.generator
    for stride, kernel, noise_k in ((10, 20, 7), (6, 12, 11)):
        y = g.up(g.leaky(y), c, c // 2, kernel, stride)
        c //= 2
        blocks = [g.resblock(y, c, k) for k in (3, 7, 11)]
        total = g.op("Sum", [*blocks, g.resblock(y, c, noise_k)])
        y = g.op("Mul", [total, g.const(np.array(1 / 3, np.float32))])
    y = g.conv(g.leaky(y), c, 22, 7)
    wave = g.op("Tanh", [g.up(y, 22, 1, 20, 5)])
    g.nodes.append(helper.make_node("Reshape", [wave, g.const(np.array([-1], np.int64))], ["waveform"]))
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "n"]),
        helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 256]),
        helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
    ]
    outputs = [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["samples"])]
    graph = helper.make_graph(g.nodes, s.name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, g.params


def make_kokoro(folder: Path, shape: KokoroShape, *, seed: int = 0) -> int:
    """Write ``model.onnx`` and ``voices.bin`` into ``folder``; returns the parameter count."""
    import onnx

    model, params = _build(shape, seed)
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    rng = np.random.default_rng(seed + 1)
    voices = {
        name: (rng.standard_normal((510, 1, 256)) * 0.1).astype(np.float32)
        for name in ("af_heart", "am_adam")
    }
    with (folder / "voices.bin").open("wb") as file:
        np.savez(file, **voices)  # type: ignore[arg-type]
    return params
