"""ResNet-50's convolutions as GEMMs (im2col), for the speedup-versus-sparsity figure.

Shapes from the published architecture (He et al., CVPR 2016, Table 1, the 50-layer column;
torchvision's v1.5 places the stride on the 3x3 convolution, as here): a 224 x 224 x 3 image,
conv1 7x7/2 with 64 channels, 3x3/2 max pool, four stages of bottleneck blocks (3, 4, 6, 3
blocks; widths 64, 128, 256, 512, expansion 4; a 1x1 projection on the first block of each
stage), global average pool and a 2048 x 1000 fully connected layer. A convolution of ``Cin``
to ``Cout`` channels with a ``kh x kw`` kernel over an ``H x W`` output is the GEMM
``rows = H * W`` (output pixels, the batch columns of the SPU) x ``k = Cin * kh * kw`` x
``cols = Cout``. Weights are not needed: cycles depend on the shapes and the N:M pattern only.
"""

__all__ = ["resnet50_gemms", "speedup_table"]


def resnet50_gemms(image=224):
    """``[{"name", "rows", "k", "cols"}]``, one per convolution (53) and the FC layer."""
    out = []
    size = image // 2                                     # conv1, stride 2
    out.append({"name": "conv1", "rows": size * size, "k": 3 * 7 * 7, "cols": 64})
    size //= 2                                            # max pool, stride 2
    cin = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=2):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 2) else 1
            out_size = size // stride
            name = f"layer{stage - 1}.{b}"
            out.append({"name": f"{name}.conv1", "rows": size * size, "k": cin, "cols": width})
            out.append({"name": f"{name}.conv2", "rows": out_size * out_size, "k": width * 9,
                        "cols": width})
            out.append({"name": f"{name}.conv3", "rows": out_size * out_size, "k": width,
                        "cols": width * 4})
            if b == 0:
                out.append({"name": f"{name}.downsample", "rows": out_size * out_size,
                            "k": cin, "cols": width * 4})
            cin, size = width * 4, out_size
    out.append({"name": "fc", "rows": 1, "k": 2048, "cols": 1000})
    return out


def speedup_table(ms=(1, 2, 4, 8, 16, 32), subsystems=4, params=None):
    """Per sparsity ``1:m``: SPU-model cycles of every GEMM (:func:`golden.spu.spu_cycles` per
    GEMM as :func:`sparsehw.model.run.gemm_cycles` counts it: output channels over
    ``subsystems``, the busiest subsystem's ``ceil(cols / subsystems)`` rows, pixels padded to
    ``lanes`` tiles; ``k`` zero-padded to a multiple of ``m`` and ``act_rows``, as im2col pads),
    the cycle speedup over 1:1, the FLOP-predicted speedup ``m`` and ``parts``: ``weight_beats``
    (the SPU's weight beats, what N:M shrinks), ``weight_xload`` (its X-load stalls: X arrives
    at ``act_rows`` rows per cycle, slower than a sparse row computes) and ``pipeline`` (its
    latency, once per GEMM). GEMM cycles only (the SPU rule): pooling, the residual adds, im2col
    itself and the ring are not in them (ReLU and BatchNorm fold into the post-ops)."""
    from sparsehw.golden.chip import chip_params
    from sparsehw.golden.spu import spu_cycles
    p = chip_params(params)
    lanes = p["lanes"]
    gemms = resnet50_gemms()
    rows_out = []
    base = None
    for m in ms:
        total, parts = 0, {"weight_beats": 0, "weight_xload": 0, "pipeline": 0}
        for g in gemms:
            step = max(m, p["act_rows"])
            k = -(-g["k"] // step) * step
            b = -(-g["rows"] // lanes) * lanes
            cycles, part = spu_cycles(p, {"n": 1, "m": m, "k": k, "o": -(-g["cols"] // subsystems),
                                          "b": b})
            total += cycles
            for key, name in (("weight_beats", "compute"), ("weight_xload", "x_load_stall"),
                              ("pipeline", "pipeline")):
                parts[key] += part[name]
        base = total if base is None else base
        rows_out.append({"m": m, "cycles": total, "speedup": base / total, "flop_speedup": m,
                         "parts": parts})
    return rows_out
