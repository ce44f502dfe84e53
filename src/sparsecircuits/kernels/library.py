"""Build (once per machine) and load the C++ kernels in `sparse_kernels.cpp`.

The source is compiled with the system C++ compiler on first use into a cache directory
(`$SPARSECIRCUITS_KERNEL_CACHE`, else `$XDG_CACHE_HOME/sparsecircuits/kernels`, else
`~/.cache/sparsecircuits/kernels`) under a name that hashes the source, the flags, the
compiler and the CPU, and is then loaded with ctypes. It needs no torch or Python headers,
so a build takes about a second. If no compiler is found or the build fails, `load()`
returns None after one warning and every caller falls back to the dense torch path
(docs/sparse-kernels.md).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import warnings
from pathlib import Path

import torch  # noqa: F401  (loads torch's libgomp first, so the kernels share its threads)

from sparsecircuits.fileformat import atomic_write

SOURCE = Path(__file__).with_name("sparse_kernels.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")

_lock = threading.Lock()
_state: dict[str, object] = {}

_f32 = ctypes.POINTER(ctypes.c_float)
_i32 = ctypes.POINTER(ctypes.c_int32)
_u8 = ctypes.POINTER(ctypes.c_uint8)
_u32 = ctypes.POINTER(ctypes.c_uint32)
_i64, _int = ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "sc_spmm": (None, [_f32, _i64, _i64, _i32, _i32, _f32, _i64, _f32, _f32, _int]),
    "sc_backward": (None, [_f32, _f32, _i64, _i64, _i64, _i32, _i32, _i32, _i32, _f32, _f32,
                           _f32, _int]),
    "sc_count": (_i64, [_f32, _i64, _i64, _i32, _i32]),
    "sc_fill": (None, [_f32, _i64, _i64, _i32, _i32, _i32, _f32, _i32, _f32, _i32]),
    "sc_abstopk": (None, [_f32, _i64, _i64, _i64, _f32, _u8, _int]),
    "sc_project": (_i64, [_f32, _i64, _i64, _i64, _i64, _i64, _u32, _u8, _u32]),
}


def cache_dir() -> Path:
    if os.environ.get("SPARSECIRCUITS_KERNEL_CACHE"):
        return Path(os.environ["SPARSECIRCUITS_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparsecircuits" / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _cpu_signature() -> str:
    """The CPU's feature flags: -march=native code must not be reused on another CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _library_path(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.stdout.encode(),
                 _cpu_signature().encode()):
        digest.update(part)
    return cache_dir() / f"sparse_kernels-{digest.hexdigest()[:16]}.so"


def _build(compiler: str, path: Path) -> None:
    def compile_to(tmp: Path) -> None:
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(tmp)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(lines[0] if lines else f"{compiler} failed")

    atomic_write(path, compile_to, mode=0o755)


def _load() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) found")
    path = _library_path(compiler)
    if not path.exists():
        _build(compiler, path)
    lib = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _reuse_freed_memory() -> None:
    """Make glibc keep freed memory for reuse instead of returning it to the system.

    glibc serves blocks over 32 MiB (a d_model 512 MLP activation at 4096 tokens) with mmap
    and unmaps them on free, so every step faults every page of every large activation in
    again: measured, that made a 512 -> 2048 sparse forward 25x slower than its arithmetic
    (157 ms vs 6 ms). Heap-only allocation (M_MMAP_MAX 0) and a 1 GiB trim threshold reuse the
    pages; the process keeps its peak memory. Process-wide, so it also speeds up torch's own
    dense ops; applied once, when the kernels load, on glibc only.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)


def load() -> ctypes.CDLL | None:
    """The kernel library, or None (after one warning) if it cannot be built or loaded."""
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"] = _load()
                _reuse_freed_memory()
            except Exception as exc:  # any failure means: use the dense path
                _state["lib"] = None
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                warnings.warn(f"sparse kernels unavailable ({msg}); using dense matmuls",
                              RuntimeWarning, stacklevel=2)
        return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    return load() is not None


def f32(t: torch.Tensor):
    return ctypes.cast(t.data_ptr(), _f32)


def i32(t: torch.Tensor):
    return ctypes.cast(t.data_ptr(), _i32)


def u8(t: torch.Tensor):
    return ctypes.cast(t.data_ptr(), _u8)


def u32(t: torch.Tensor):
    return ctypes.cast(t.data_ptr(), _u32)
