"""The corpus of public evalscripts (tests/conformance/corpus/manifest.toml): each runs on
synthetic data for its collection as the engine runs a feature, or fails with the error its
verdict names; those with an independent numpy version must match it pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from sentinelhub import DataCollection
from sentinelhub.evalscript import generate_evalscript

from eobatch.script import (
    EvalscriptError,
    SourceData,
    get_runtime,
    parse_setup,
    sample_dtype,
)
from tests.conformance.cases import convert
from tests.conformance.corpus.references import REFERENCES, TOLERANCE, USERDATA
from tests.conformance.corpus.runner import load_manifest, run

ENTRIES = load_manifest()
MULTI_TEMPORAL = {"ORBIT", "TILE"}


def test_the_corpus_is_large_and_cross_checked() -> None:
    assert len(ENTRIES) >= 80
    assert len({e.id for e in ENTRIES}) == len(ENTRIES)
    assert all(e.verdict in ("runs", "script-fault") for e in ENTRIES)
    assert all(e.reason and e.error for e in ENTRIES if e.verdict == "script-fault")
    runs = {e.id for e in ENTRIES if e.verdict == "runs"}
    assert set(REFERENCES) <= runs
    assert len(REFERENCES) >= 25
    if any(e.text() is None for e in ENTRIES):
        pytest.skip("the corpus scripts are not here (tests/conformance/corpus/README.md)")
    multi_temporal = [
        name
        for name in REFERENCES
        if run(next(e for e in ENTRIES if e.id == name)).setup.mosaicking in MULTI_TEMPORAL
    ]
    assert len(multi_temporal) >= 8, multi_temporal


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_corpus_script(entry) -> None:  # type: ignore[no-untyped-def]
    if entry.text() is None:
        pytest.skip(f"{entry.id} is not here (tests/conformance/corpus/README.md)")
    if entry.verdict == "script-fault":
        with pytest.raises(EvalscriptError) as info:
            run(entry)
        assert entry.error in str(info.value)
        return
    result = run(entry)
    rasters = result.result.rasters
    for output in result.setup.outputs:
        raster = rasters[output.id]
        assert raster.dtype == sample_dtype(output.sample_type), output.id
        assert (
            raster.shape[1:]
            == next(iter(result.data.values()))
            .bands[next(iter(next(iter(result.data.values())).bands))]
            .shape[1:]
        )
    reference = REFERENCES.get(entry.id)
    if reference is not None:
        expected = reference(result)
        assert set(expected) == set(rasters)
        for output_id, want in expected.items():
            got = rasters[output_id]
            assert got.dtype == want.dtype and got.shape == want.shape, output_id
            tolerance = TOLERANCE.get(entry.id, 0)
            if tolerance:
                np.testing.assert_allclose(
                    got.astype(np.float64), want.astype(np.float64), atol=tolerance, rtol=0
                )
            else:
                np.testing.assert_array_equal(got, want, err_msg=output_id)
    if entry.id in USERDATA:
        assert result.result.userdata == USERDATA[entry.id](result)


@pytest.mark.parametrize("prioritize_dn", [True, False])
def test_scripts_sentinelhub_py_generates_run_with_their_units_per_band(
    prioritize_dn: bool,
) -> None:
    """sentinelhub-py's generate_evalscript (eo-learn's input tasks use it) writes one unit per
    band, mixing REFLECTANCE, DN, DEGREES...; each band reaches its output unchanged."""
    script = generate_evalscript(
        data_collection=DataCollection.SENTINEL2_L2A,
        bands=["B02", "B8A"],
        meta_bands=["dataMask", "SCL", "sunZenithAngles"],
        prioritize_dn=prioritize_dn,
    )
    setup = parse_setup(script)
    units = {b: setup.unit_of(b) for b in setup.bands}
    assert units["dataMask"] == "DN" and units["sunZenithAngles"] == "DEGREES"
    assert units["B02"] == ("DN" if prioritize_dn else "REFLECTANCE")
    rng = np.random.default_rng(3)
    bands = {
        "B02": rng.integers(1, 9000, (1, 4, 5)).astype(np.float32),
        "B8A": rng.integers(1, 9000, (1, 4, 5)).astype(np.float32),
        "dataMask": np.ones((1, 4, 5), np.uint8),
        "SCL": rng.integers(0, 12, (1, 4, 5)).astype(np.float32),
        "sunZenithAngles": rng.uniform(20, 70, (1, 4, 5)).astype(np.float32),
    }
    if not prioritize_dn:  # the reader scales reflectance bands: the script sees them scaled
        for name in ("B02", "B8A"):
            bands[name] = bands[name] * np.float32(1e-4)
    result = get_runtime(10, 256).evaluate_sources(script, setup, {"default": SourceData(bands)})
    for output in setup.outputs:
        want = convert(bands[output.id][0].astype(np.float64), output.sample_type)
        np.testing.assert_array_equal(result.rasters[output.id][0], want, err_msg=output.id)
    assert result.userdata == {"norm_factor": 0.0001}
