from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eobatch.lifecycle.billing import band_factor, feature_pu, format_factor


def test_reference_request_is_one_pu_before_the_batch_discount() -> None:
    # 512 × 512, 3 bands, 1 sample, 16-bit output: 1 PU, then ×1/3 for features ≥ 10 000 px.
    assert feature_pu(512, 512, ["B02", "B03", "B04"], ["UINT16"]) == pytest.approx(1 / 3)


def test_small_features_pay_the_full_rate_with_the_area_floor() -> None:
    assert feature_pu(50, 50, ["B04", "B08", "B02"], ["UINT8"]) == pytest.approx(0.01)


def test_datamask_is_free_unless_alone() -> None:
    assert band_factor(["B04", "B08", "dataMask"]) == pytest.approx(2 / 3)
    assert band_factor(["dataMask"]) == pytest.approx(1 / 3)


def test_float32_doubles() -> None:
    assert format_factor(["UINT8", "FLOAT32"]) == 2
    assert format_factor(["UINT16"]) == 1


def test_demo_feature() -> None:
    # LAEA 20 km at 20 m: 1000 × 1000 px, NDVI from 2 bands, FLOAT32.
    expected = (1000 * 1000 / 262144) * (2 / 3) * 2 / 3
    assert feature_pu(1000, 1000, ["B04", "B08", "dataMask"], ["FLOAT32"]) == pytest.approx(
        expected
    )


@given(st.integers(1, 3500), st.integers(1, 3500), st.integers(1, 13))
def test_price_grows_with_area_and_bands(w: int, h: int, n: int) -> None:
    bands = [f"B{i}" for i in range(n)]
    pu = feature_pu(w, h, bands, ["UINT8"])
    assert pu >= 0.005 / 3
    assert feature_pu(w + 1, h, bands, ["UINT8"]) >= pu or w * h < 10_000 <= (w + 1) * h
    assert feature_pu(w, h, [*bands, "extra"], ["UINT8"]) > pu
