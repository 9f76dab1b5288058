"""engine.hostmem: freed host memory is reused instead of faulted back in from the OS."""

import subprocess
import sys
import textwrap

import pytest

from engine.hostmem import retain_freed_memory

# Ten rounds of what an XLA call does with its buffers: allocate two 12 MiB blocks and a 4 MiB
# one, touch them, free them; print the minor page faults after the first round. With glibc's
# defaults every round maps and faults in all 7168 pages afresh (its adaptive thresholds give the
# memory back), the cost that engine/hostmem.py removes.
_LOOP = textwrap.dedent("""
    import ctypes, ctypes.util, resource, sys
    from engine.hostmem import retain_freed_memory
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    faults = 0
    for i in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        sizes = [12 << 20, 12 << 20, 4 << 20]
        blocks = [libc.malloc(size) for size in sizes]
        for p, size in zip(blocks, sizes):
            ctypes.memset(p, 1, size)
        for p in blocks:
            libc.free(p)
        if i:
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(faults)
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_is_reused_without_page_faults():
    assert retain_freed_memory()
    default, retain = _faults("default"), _faults("retain")
    assert default > 9 * 7168 // 2, default  # the default really faults round after round
    assert retain < 200, retain  # kept: nine more rounds touch pages already mapped
