"""Matrix products that add into their output, through the BLAS that NumPy uses.

``np.matmul`` always overwrites its output. The SGD update of a weight matrix,
``v = momentum * v + gradient`` and ``w -= v``, then costs the gradient
product plus three passes over arrays of the weight's size. BLAS ``gemm``
computes ``C = alpha * A @ B + beta * C`` in one call, and ``axpy`` computes
``y += alpha * x`` in one pass on all BLAS threads, so the update needs the
product and one pass. For the 784 x 1024 first layer at batch 128, the
update beyond the product took about 0.3 ms a step with NumPy and 0.1 ms this
way. A whole step took about 2.6 ms (OpenBLAS 0.3.31 on 2 cores of an AMD
EPYC).

``load_blas`` looks the CBLAS symbols up through NumPy's own extension
module, so the calls reach the same library and thread pool as
``np.matmul``. It only does so when NumPy's build configuration names
OpenBLAS, whose integer size it also states. NumPy 2.4's Linux wheel bundles
it with 64-bit integers as ``scipy_cblas_sgemm64_`` and so on. With any other
BLAS, ``load_blas`` returns None, and ``matmul_add`` and ``add_scaled``
compute the same formulas with NumPy alone.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging

import numpy as np

logger = logging.getLogger(__name__)

# CBLAS enumeration values, fixed by the CBLAS standard.
ROW_MAJOR = 101
NO_TRANSPOSE = 111
TRANSPOSE = 112

TYPE_PREFIXES = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}
C_SCALARS = {
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
}


class Blas:
    """``gemm`` and ``axpy`` of NumPy's OpenBLAS, for float32 and float64 arrays.

    ``functions`` maps (routine, dtype) to a ctypes function, for the
    routines "gemm" and "axpy". ``integer`` is the library's integer type, and
    ``name`` the NumPy module through which the symbols were found.
    """

    def __init__(self, functions: dict, integer: type, name: str) -> None:
        self.functions = functions
        self.integer = integer
        self.name = name

    def gemm(
        self,
        a: np.ndarray,
        b: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> bool:
        """Set ``out = alpha * a @ b + beta * out`` if BLAS can take the arrays.

        Returns False, leaving ``out`` untouched, when the dtypes differ or
        are not float32 or float64, or when an array has no unit stride in
        either dimension. ``out`` must not overlap ``a`` or ``b``.
        """
        dtype = out.dtype
        if a.dtype != dtype or b.dtype != dtype or dtype not in TYPE_PREFIXES:
            return False
        if not out.flags.writeable:
            return False
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            return False
        output = matrix_layout(out)
        if output is None or output[0] == TRANSPOSE:
            # An output with unit stride down its columns is the transpose of
            # a row-major matrix: compute out.T = b.T @ a.T instead.
            a, b, out = b.T, a.T, out.T
            output = matrix_layout(out)
            if output is None or output[0] == TRANSPOSE:
                return False
        left, right = matrix_layout(a), matrix_layout(b)
        if left is None or right is None:
            return False
        rows, inner = a.shape
        columns = out.shape[1]
        if rows == 0 or columns == 0:
            return True
        if inner == 0:
            out *= beta
            return True
        self.functions["gemm", dtype](
            ROW_MAJOR,
            left[0],
            right[0],
            rows,
            columns,
            inner,
            alpha,
            a.ctypes.data,
            left[1],
            b.ctypes.data,
            right[1],
            beta,
            out.ctypes.data,
            output[1],
        )
        return True

    def axpy(self, alpha: float, x: np.ndarray, y: np.ndarray) -> bool:
        """Set ``y += alpha * x`` if both are contiguous in the same order.

        Returns False, leaving ``y`` untouched, otherwise.
        """
        dtype = y.dtype
        if x.dtype != dtype or dtype not in TYPE_PREFIXES or x.shape != y.shape:
            return False
        same_order = (x.flags.c_contiguous and y.flags.c_contiguous) or (
            x.flags.f_contiguous and y.flags.f_contiguous
        )
        if not same_order or not y.flags.writeable:
            return False
        if y.size:
            self.functions["axpy", dtype](
                y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1
            )
        return True


def matrix_layout(array: np.ndarray) -> tuple[int, int] | None:
    """Return the CBLAS row-major transpose flag and leading dimension of a matrix.

    Returns None when neither dimension has unit stride, or for negative or
    overlapping strides, which BLAS cannot express.
    """
    if array.ndim != 2:
        return None
    rows, columns = array.shape
    itemsize = array.itemsize
    row_stride, column_stride = array.strides
    if row_stride % itemsize or column_stride % itemsize:
        return None
    row_step, column_step = row_stride // itemsize, column_stride // itemsize
    # A dimension of length 1 may have any stride, so its step is replaced by
    # the smallest leading dimension that BLAS accepts.
    if column_step == 1 or columns == 1:
        leading = row_step if rows > 1 else max(columns, 1)
        if leading >= max(columns, 1):
            return NO_TRANSPOSE, leading
    if row_step == 1 or rows == 1:
        leading = column_step if columns > 1 else max(rows, 1)
        if leading >= max(rows, 1):
            return TRANSPOSE, leading
    return None


def blas_symbols() -> tuple[list[str], type] | None:
    """Return the symbol name patterns to try and the integer type of NumPy's BLAS.

    Returns None unless NumPy reports OpenBLAS in its build configuration,
    because other libraries use other names and integer sizes.
    """
    try:
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (KeyError, TypeError, ValueError):
        return None
    if "openblas" not in str(config.get("name", "")).lower():
        return None
    if "USE64BITINT" in str(config.get("openblas configuration", "")):
        return ["scipy_cblas_{}64_", "cblas_{}64_"], ctypes.c_int64
    # NOTE: only NumPy 2.4's Linux wheel (64-bit integers) has been run; the
    # 32-bit names below are the CBLAS standard's, untested here.
    return ["scipy_cblas_{}", "cblas_{}"], ctypes.c_int


def bind(library: ctypes.CDLL, patterns: list[str], integer: type) -> dict | None:
    """Return the ctypes functions of gemm and axpy, or None if one is missing."""
    pointer = ctypes.c_void_p
    functions = {}
    for dtype, letter in TYPE_PREFIXES.items():
        scalar = C_SCALARS[dtype]
        signatures = {
            "gemm": [ctypes.c_int] * 3
            + [integer] * 3
            + [scalar, pointer, integer, pointer, integer, scalar, pointer, integer],
            "axpy": [integer, scalar, pointer, integer, pointer, integer],
        }
        for routine, argtypes in signatures.items():
            for pattern in patterns:
                function = getattr(library, pattern.format(letter + routine), None)
                if function is not None:
                    break
            else:
                return None
            function.argtypes = argtypes
            function.restype = None
            functions[routine, dtype] = function
    return functions


def check(blas: Blas) -> bool:
    """Compare a small gemm and axpy with NumPy, in both dtypes."""
    rng = np.random.default_rng(0)
    for dtype in TYPE_PREFIXES:
        a = rng.standard_normal((3, 5)).astype(dtype)
        b = rng.standard_normal((5, 4)).astype(dtype)
        out = rng.standard_normal((4, 3)).astype(dtype).T
        expected = 2.0 * (a @ b) + 0.5 * out
        if not blas.gemm(a, b, out, alpha=2.0, beta=0.5):
            return False
        if not np.allclose(out, expected, rtol=1e-4, atol=1e-5):
            return False
        y = out.copy(order="K")
        if not blas.axpy(-3.0, out, y) or not np.allclose(y, -2.0 * out):
            return False
    return True


@functools.cache
def load_blas() -> Blas | None:
    """Return NumPy's OpenBLAS as a Blas, or None when it cannot be used.

    The first call looks the symbols up and checks a small product against
    NumPy. With None, ``matmul_add`` and ``add_scaled`` use NumPy alone.
    """
    symbols = blas_symbols()
    if symbols is None:
        logger.info(
            "NumPy's BLAS is not OpenBLAS, so the trainer computes every product "
            "with NumPy, which is slower at small batches"
        )
        return None
    patterns, integer = symbols
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            module = importlib.import_module(name)
            # Loading a library that is already loaded returns its handle. On
            # Linux, symbol lookup through that handle also searches the
            # libraries it links. Elsewhere bind() may find nothing.
            library = ctypes.CDLL(module.__file__)
        except (ImportError, OSError, AttributeError):
            continue
        functions = bind(library, patterns, integer)
        if functions is None:
            continue
        blas = Blas(functions, integer, name)
        if check(blas):
            return blas
        logger.warning(
            "NumPy's OpenBLAS gave a wrong result through %s; the trainer "
            "falls back to NumPy products, which are slower at small batches",
            name,
        )
        return None
    logger.info(
        "gemm of NumPy's OpenBLAS not found, so the trainer computes every "
        "product with NumPy, which is slower at small batches"
    )
    return None


def matmul_add(
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    beta: float,
    scratch: np.ndarray,
    blas: Blas | None,
) -> None:
    """Set ``out = a @ b + beta * out``.

    With ``blas`` this is one gemm call. Otherwise NumPy writes the product
    into ``scratch``, an array of ``out``'s shape and dtype, and adds it.
    """
    if blas is not None and blas.gemm(a, b, out, beta=beta):
        return
    np.matmul(a, b, out=scratch)
    out *= beta
    out += scratch


def add_scaled(
    alpha: float,
    x: np.ndarray,
    y: np.ndarray,
    scratch: np.ndarray,
    blas: Blas | None,
) -> None:
    """Set ``y += alpha * x``; ``scratch`` has ``y``'s shape and dtype."""
    if blas is not None and blas.axpy(alpha, x, y):
        return
    if alpha == -1.0:
        y -= x
        return
    np.multiply(x, alpha, out=scratch)
    y += scratch
