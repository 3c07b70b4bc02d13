import pytest


@pytest.fixture(scope="session")
def built_kernels(tmp_path_factory):
    """(folder, manifest) of the AOT kernels for sm_87 and sm_90, built once for every plugin test."""
    pytest.importorskip("triton", reason="Triton is not installed (pip install m2f[kernels])")
    from m2f.plugins.aot import build_kernels

    out = tmp_path_factory.mktemp("kernels")
    return out, build_kernels(out, archs=(87, 90))
