"""Every conformance case through the real runtime, compared with its numpy expectation."""

from __future__ import annotations

import numpy as np
import pytest

from eobatch.script import SourceData, get_runtime, parse_setup
from tests.conformance.cases import CASES, Case


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case) -> None:
    rng = np.random.default_rng(abs(hash(case.name)) % 2**32)
    data = case.inputs(rng)
    setup = parse_setup(case.script)
    runtime = get_runtime(30, 512)
    if setup.mosaicking != "SIMPLE":
        kept = runtime.pre_process_scenes(
            case.script, setup, {sid: d.scenes for sid, d in data.items()}
        )
        if case.kept is not None:
            assert kept == case.kept
        data = {
            sid: SourceData(
                {k: v[kept[sid]] for k, v in d.bands.items()}, [d.scenes[n] for n in kept[sid]]
            )
            for sid, d in data.items()
        }
    result = runtime.evaluate_sources(case.script, setup, data, case.custom)
    expected = case.expected(data)
    assert set(result.rasters) == set(expected)
    for output_id, want in expected.items():
        got = result.rasters[output_id]
        assert got.dtype == want.dtype, output_id
        assert got.shape == want.shape, output_id
        if case.rtol:
            np.testing.assert_allclose(got, want, rtol=case.rtol, equal_nan=True)
        else:
            np.testing.assert_array_equal(got, want)
    if case.userdata is not None:
        assert result.userdata == case.userdata(data)
    else:
        assert result.userdata is None
