import os
from pathlib import Path

import pytest

# Share compiled XLA programs between the tests' processes (the CLI does the same for users).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "acbo" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

SPECS = Path(__file__).resolve().parents[1] / "specs"


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop each test file's compiled XLA programs when it ends. Every XLA:CPU executable holds
    memory mappings; ~790 tests' worth in one process hit vm.max_map_count (65530) and the fast
    suite died mid-run ("LLVM compilation error: Cannot allocate memory", then SIGSEGV/SIGABRT).
    The persistent cache above makes the recompiles cheap."""
    yield
    import jax

    jax.clear_caches()


@pytest.fixture(scope="session")
def smoke_registry(tmp_path_factory):
    """A registry in which specs/smoke.toml has been applied once (shared: compiles are slow)."""
    from typer.testing import CliRunner

    from engine.cli import app

    root = tmp_path_factory.mktemp("registry")
    result = CliRunner().invoke(app, ["apply", str(SPECS / "smoke.toml"), "--registry", str(root)])
    assert result.exit_code == 0, result.output
    return root
