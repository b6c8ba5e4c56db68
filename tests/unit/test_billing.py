"""Processing-unit pricing (pu-byoc-process.md §1): one test per rule and the spec's examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eobatch.lifecycle.billing import (
    Crossing,
    Pricing,
    band_factor,
    crossing,
    estimate,
    feature_pu,
    format_factor,
    fusion_factor,
    max_output_bytes,
    surcharge_micro,
    task_minimum_micro,
    to_micro,
    to_pu,
)

RGBN = ["B02", "B03", "B04", "B08", "dataMask"]


def test_reference_request_is_one_pu_before_the_batch_discount() -> None:
    # 512 × 512, 3 bands, 1 sample, 16-bit output: 1 PU, then ×1/3 for features ≥ 10 000 px.
    assert feature_pu(512, 512, ["B02", "B03", "B04"], ["UINT16"]) == pytest.approx(1 / 3)


def test_area_factor_has_a_floor_of_one_hundredth() -> None:
    # 50 × 50 = 2500 px < 10 000: no discount; area 0.0095 → 0.01.
    assert feature_pu(50, 50, ["B04", "B08", "B02"], ["UINT8"]) == pytest.approx(0.01)


def test_small_features_pay_the_full_rate() -> None:
    # The spec's edge case: 90 × 90 px (8100 < 10 000) with 3 bands costs 0.0309 PU.
    assert feature_pu(90, 90, ["B02", "B03", "B04"], ["UINT8"]) == pytest.approx(0.0309, abs=5e-5)
    assert feature_pu(100, 100, ["B02", "B03", "B04"], ["UINT8"]) == pytest.approx(
        10_000 / 262_144 / 3
    )


def test_minimum_cost_per_feature_is_0_005_pu() -> None:
    # Worked example 1, second part: 1 band at 10 × 10 px → 0.0033 → 0.005.
    assert feature_pu(10, 10, ["B04"], ["UINT8"]) == pytest.approx(0.005)
    # Worked example 1: 20 × 20 px, B04 + B08 (+ dataMask), UINT8 → 0.0067.
    assert feature_pu(20, 20, ["B04", "B08", "dataMask"], ["UINT8"]) == pytest.approx(0.01 * 2 / 3)


def test_datamask_is_free_unless_alone() -> None:
    assert band_factor(["B04", "B08", "dataMask"]) == pytest.approx(2 / 3)
    assert band_factor(["dataMask"]) == pytest.approx(1 / 3)
    assert band_factor([]) == 0


def test_fused_sources_sum_their_bands() -> None:
    # UNCERTAIN in the spec, its recommendation: bands of all sources are summed.
    assert band_factor(["VV", "VH", "B04", "B08", "dataMask", "dataMask"]) == pytest.approx(4 / 3)


def test_float32_doubles_and_mixed_outputs_take_the_largest_factor() -> None:
    assert format_factor(["UINT8", "FLOAT32"]) == 2
    assert format_factor(["UINT16"]) == 1
    assert format_factor(["INT8", "UINT8", "INT16", "AUTO"]) == 1


def test_data_fusion_factor() -> None:
    assert fusion_factor(1) == 1
    assert fusion_factor(2) == 2
    # The spec's example: S2 L1C + S2 L2A local, Landsat remote → 1 + 1 + 2 = 4.
    assert fusion_factor(2, 1) == 4
    assert feature_pu(512, 512, ["B04"] * 3, ["UINT8"], fusion=fusion_factor(2)) == pytest.approx(
        2 / 3
    )


def test_samples_multiply_and_zero_samples_cost_nothing() -> None:
    one = feature_pu(1000, 1000, RGBN, ["UINT16"])
    assert feature_pu(1000, 1000, RGBN, ["UINT16"], samples=6) == pytest.approx(6 * one)
    assert feature_pu(1000, 1000, RGBN, ["UINT16"], samples=0) == 0


def test_worked_example_3_batch_orbit_to_another_region() -> None:
    # 250 features of 1000 × 1000 px, 4 bands + dataMask, UINT16, ORBIT with 6 scenes each,
    # ~6 MB per feature delivered to another region.
    pricing = Pricing(tuple(RGBN), ("UINT16",))
    per_feature = pricing.feature_pu(1000, 1000, samples=6)
    assert per_feature == pytest.approx(10.173, abs=5e-4)
    processing = 250 * pricing.feature_micro(1000, 1000, samples=6)
    assert to_pu(processing) == pytest.approx(2543.13, abs=0.01)
    transfer = 250 * surcharge_micro(6_000_000, Crossing.REGION)
    assert to_pu(transfer) == 45
    assert to_pu(processing + transfer) == pytest.approx(2588.13, abs=0.01)
    assert to_pu(processing + 250 * surcharge_micro(6_000_000, Crossing.CLOUD)) == pytest.approx(
        2693.13, abs=0.01
    )


def test_worked_example_2_float32_sentinel_1_factors() -> None:
    # 2000 × 2000 px, VV + VH, FLOAT32, orthorectified (×2, passed as an extra factor here):
    # 15.2588 × 2/3 × 2 × 2 = 40.69 PU before the batch discount.
    assert feature_pu(2000, 2000, ["VV", "VH"], ["FLOAT32"], fusion=2) * 3 == pytest.approx(
        40.69, abs=0.005
    )


def test_surcharges_per_megabyte() -> None:
    assert surcharge_micro(1_000_000, Crossing.NONE) == 0
    assert surcharge_micro(1_000_000, Crossing.REGION) == 30_000  # 0.03 PU
    assert surcharge_micro(1_000_000, Crossing.CLOUD) == 100_000  # 0.1 PU
    assert surcharge_micro(2**20, Crossing.CLOUD) == to_micro(0.1048576)  # MB = 10^6 bytes


def test_crossing_compares_the_delivery_with_the_deployment() -> None:
    assert crossing(None, "us-west-2", "aws", "eu-central-1") is Crossing.NONE  # local folder
    assert crossing("aws", "eu-central-1", "aws", "eu-central-1") is Crossing.NONE
    assert crossing("aws", "us-west-2", "aws", "eu-central-1") is Crossing.REGION
    assert crossing("gcp", "eu-central-1", "aws", "eu-central-1") is Crossing.CLOUD
    assert crossing("gcp", "us-central1", "aws", "eu-central-1") is Crossing.CLOUD


def test_task_minimum_of_100_pu() -> None:
    assert task_minimum_micro(0) == 0  # nothing processed: nothing to top up
    assert task_minimum_micro(to_micro(12.5)) == to_micro(87.5)
    assert task_minimum_micro(to_micro(100)) == 0
    assert task_minimum_micro(to_micro(2588.13)) == 0


def test_micro_pu_amounts_add_up_exactly() -> None:
    charges = [to_micro(feature_pu(w, 997, RGBN, ["FLOAT32"])) for w in range(900, 1000)]
    assert to_pu(sum(charges)) == round(sum(charges) / 1_000_000, 6)
    assert to_micro(to_pu(sum(charges))) == sum(charges)


def test_largest_output_bound_covers_raw_size_and_overviews() -> None:
    raw = 1000 * 1000 * 2 * 3 + 1000 * 1000 * 4
    bound = max_output_bytes(1000, 1000, [(3, "UINT16"), (1, "FLOAT32")])
    assert bound >= raw * 4 / 3 + 2 * 65_536


def test_estimate_bounds_and_expectation() -> None:
    pricing = Pricing(("B04", "B08"), ("UINT8",))
    features = [(1000, 1000, 0, 4), (1000, 1000, 0, 2)]
    est = estimate(pricing, features, Crossing.REGION, [(1, "UINT8")])
    per_sample = pricing.feature_micro(1000, 1000, 1)
    assert est.feature_count == 2
    assert est.min_pu == 0  # ORBIT/TILE: every scene may turn out empty; nothing ran, no minimum
    processing = pricing.feature_micro(1000, 1000, 4) + pricing.feature_micro(1000, 1000, 2)
    assert processing == pytest.approx(6 * per_sample, abs=6)  # rounded per feature
    raw_transfer = 2 * surcharge_micro(1_000_000, Crossing.REGION)
    assert est.expected_pu == to_pu(max(processing + raw_transfer, to_micro(100)))
    assert est.max_pu >= est.expected_pu >= est.min_pu
    assert est.as_json() == {
        "featureCount": 2,
        "minPU": est.min_pu,
        "expectedPU": est.expected_pu,
        "maxPU": est.max_pu,
    }


def test_estimate_includes_the_task_minimum() -> None:
    est = estimate(Pricing(("B04",), ("UINT8",)), [(100, 100, 1, 1)], Crossing.NONE, [(1, "UINT8")])
    assert est.min_pu == est.expected_pu == est.max_pu == 100


def test_demo_feature() -> None:
    # LAEA 20 km at 20 m: 1000 × 1000 px, NDVI from 2 bands, FLOAT32.
    expected = (1000 * 1000 / 262144) * (2 / 3) * 2 / 3
    assert feature_pu(1000, 1000, ["B04", "B08", "dataMask"], ["FLOAT32"]) == pytest.approx(
        expected
    )


@given(st.integers(1, 3500), st.integers(1, 3500), st.integers(1, 13), st.integers(1, 30))
def test_price_grows_with_area_bands_and_samples(w: int, h: int, n: int, samples: int) -> None:
    bands = [f"B{i}" for i in range(n)]
    pu = feature_pu(w, h, bands, ["UINT8"], samples)
    assert pu >= 0.005 / 3
    assert feature_pu(w + 1, h, bands, ["UINT8"], samples) >= pu or w * h < 10_000 <= (w + 1) * h
    assert feature_pu(w, h, [*bands, "extra"], ["UINT8"], samples) >= pu
    assert feature_pu(w, h, bands, ["UINT8"], samples + 1) >= pu
    assert feature_pu(w, h, bands, ["FLOAT32"], samples) >= pu
