"""ResNet-50's convolutions as im2col GEMMs (sparsehw/model/resnet.py)."""

from sparsehw.model import resnet


def test_resnet50_shapes_match_the_published_architecture():
    gemms = resnet.resnet50_gemms()
    convs = [g for g in gemms if g["name"] != "fc"]
    assert len(convs) == 53                       # 1 + 16 blocks x 3 + 4 projections
    # multiply-accumulates of ResNet-50 at 224 x 224: about 4.1 G (He et al.: 3.8 GFLOPs
    # counting multiply-adds, torchvision v1.5 with the stride on the 3x3: 4.09 G)
    macs = sum(g["rows"] * g["k"] * g["cols"] for g in gemms)
    assert 4.0e9 < macs < 4.2e9
    # 25.5 M parameters in total: convolutions + fc weights (no BN, no bias) = 25.5 M
    weights = sum(g["k"] * g["cols"] for g in gemms)
    assert 25.4e6 < weights < 25.6e6
    last = [g for g in gemms if g["name"].startswith("layer4.2")]
    assert [g["rows"] for g in last] == [49, 49, 49] and last[-1]["cols"] == 2048


def test_speedup_is_below_the_flop_prediction_and_grows():
    table = resnet.speedup_table(ms=(1, 2, 8))
    assert table[0]["speedup"] == 1.0
    assert 1.0 < table[1]["speedup"] <= 2.0
    assert table[1]["speedup"] < table[2]["speedup"] <= 8.0


def test_speedup_table_parts_add_up_and_the_stall_grows():
    table = resnet.speedup_table(ms=(1, 4, 32))
    for row in table:
        assert sum(row["parts"].values()) == row["cycles"]
    beats = [row["parts"]["weight_beats"] for row in table]
    # the beats shrink about like m (ceil of nonzeros per row over macs), the stall grows
    assert 3.5 * beats[1] < beats[0] < 4.1 * beats[1]
    stall = [row["parts"]["weight_xload"] for row in table]
    assert stall[0] == 0 < stall[1] < stall[2]
