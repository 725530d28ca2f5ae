"""hsd's MXFP4 encoder, checked against transformers' own MXFP4 decoder (the one that loads gpt-oss).

transformers' ``convert_moe_packed_tensors`` is what turns the released checkpoint's
``*_blocks`` / ``*_scales`` into bf16 weights; whatever hsd writes must decode through it to
the nearest MXFP4 value of the original, and exactly to values already on the grid.
"""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.mxfp4 import FP4_VALUES, convert_moe_packed_tensors

from hsd.errors import ModelError
from hsd.models.mxfp4 import E2M1, decode, encode, pack_expert, unpack_expert

GRID = torch.tensor(E2M1 + tuple(-v for v in E2M1))


def _transformers_decode(blocks, scales):
    """transformers' decoder on the [out, in] layout, back to [..., in] rows (it transposes to [E, in, out])."""
    return convert_moe_packed_tensors(blocks.unsqueeze(0), scales.unsqueeze(0), dtype=torch.float32)[0].T


def _weights() -> torch.Tensor:
    """Rows of 128 values (4 blocks) with the cases that matter: gaussian weights at several
    magnitudes, an all-zero block, a block with one outlier, tiny and huge blocks."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 128, generator=g) * 0.02
    w[1] *= 1e3
    w[2, :32] = 0.0
    w[3, 5] = 40.0
    w[4] *= 1e-30
    w[5] = torch.linspace(-7, 7, 128)
    return w


def test_the_grid_is_transformers_grid():
    assert list(GRID) == FP4_VALUES


def test_decodes_through_transformers_to_a_nearest_mxfp4_value():
    w = _weights()
    blocks, scales = encode(w)
    assert blocks.dtype == scales.dtype == torch.uint8
    assert blocks.shape == (64, 4, 16) and scales.shape == (64, 4)
    got = _transformers_decode(blocks, scales)
    assert torch.equal(got, decode(blocks, scales))  # hsd's decoder agrees bit for bit
    # Nearest: no value of the block's grid (FP4 values x the block's scale) is closer to the original.
    scale = torch.ldexp(torch.ones(64, 4), scales.to(torch.int32) - 127).repeat_interleave(32, dim=1)
    candidates = GRID.view(1, 1, 16) * scale.unsqueeze(-1)
    best = (candidates - w.unsqueeze(-1)).abs().amin(dim=-1)
    assert torch.equal((got - w).abs(), best)
    # And the scale is the smallest power of two that keeps the block within +-6 (nothing saturates).
    amax = w.reshape(64, 4, 32).abs().amax(-1)
    s = torch.ldexp(torch.ones(64, 4), scales.to(torch.int32) - 127)
    assert torch.all(amax <= 6 * s) and torch.all((amax > 3 * s) | (amax == 0))


def test_values_on_the_grid_round_trip_exactly():
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16, (8, 3, 32), generator=g)
    codes[:, :, 0] = 7  # each block holds a 6 (its maximum) so the scale is the one it was built with
    exps = torch.randint(-20, 20, (8, 3, 1), generator=g)
    w = torch.ldexp(GRID[codes], exps.float()).reshape(8, 96)
    assert torch.equal(_transformers_decode(*encode(w)), w)
    assert torch.equal(_transformers_decode(*encode(w.to(torch.bfloat16))), w)  # bf16 input: same values


def test_ties_round_to_even():
    half_way = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] + [0.0] * 24)
    assert decode(*encode(half_way.view(1, 32)))[0, :8].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0]


def test_expert_layout_is_the_released_one():
    """transformers' parameter [E, in, out] is stored transposed, blocks along ``in``; its own
    decoder (which transposes back) returns the parameter's layout."""
    param = torch.randn(2, 64, 96) * 0.1
    blocks, scales = pack_expert(param)
    assert blocks.shape == (2, 96, 2, 16) and scales.shape == (2, 96, 2)
    back = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    assert back.shape == param.shape and torch.equal(back, unpack_expert(blocks, scales))
    step = torch.ldexp(torch.ones(scales.shape), scales.to(torch.int32) - 127).repeat_interleave(32, -1)
    assert torch.all((back - param).abs() <= step.transpose(1, 2))  # E2M1's widest gap (4 to 6) is 2 steps


@pytest.mark.parametrize("bad, message", [(torch.ones(2, 33), "multiple of 32"),
                                          (torch.full((1, 32), float("nan")), "NaN")])
def test_bad_weights_give_one_clear_error(bad, message):
    with pytest.raises(ModelError, match=message):
        encode(bad)


def test_an_unknown_tiny_format_is_refused(tmp_path, capsys):
    from hsd.cli import main as hsd
    from hsd.models.tiny import build_tiny

    with pytest.raises(ModelError, match="safetensors, mxfp4"):
        build_tiny(tmp_path / "m", fmt="gguf")
    with pytest.raises(SystemExit) as exit_:
        hsd(["model", "tiny", "--out", str(tmp_path / "m"), "--format", "gguf"])
    assert exit_.value.code == 2 and "invalid choice: 'gguf'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
