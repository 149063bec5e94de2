"""The optional dependency of the DALI backend: NVIDIA DALI, imported only where it is used.

``dali_aug.ops`` and ``dali_aug.policies`` import without DALI (GPU machines with torch and
CuPy only); the DALI backend calls :func:`require_dali` (or imports ``dali_aug.ops._dali``,
which does) and gets an ImportError naming the package to install.
"""

from __future__ import annotations

__all__ = ["DALI_PACKAGE", "missing_dali", "require_dali"]

#: The pip requirement of the DALI backend (as in setup.py).
DALI_PACKAGE = "nvidia-dali-cuda130==2.4.0"


_BACKEND_ALTERNATIVE = ', or use the torch backend (backend="torch", dali_aug.ops.apply_params)'


def missing_dali(
    err: ImportError, *, what: str = "the DALI backend", alternative: str = _BACKEND_ALTERNATIVE
) -> ImportError:
    """The ImportError to raise (``from err``) when importing ``nvidia.dali`` failed.

    Args:
        err: the failed import's error.
        what: what needs DALI (``"the DALI backend"``, ``"dali_aug.Loader"``).
        alternative: what works without it, appended to the message.
    """
    return ImportError(
        f"{what} needs NVIDIA DALI, which could not be imported ({err}); install it "
        f"with `pip install {DALI_PACKAGE}`{alternative}"
    )


def require_dali(
    *, what: str = "the DALI backend", alternative: str = _BACKEND_ALTERNATIVE
) -> None:
    """Raises an ImportError naming the package to install unless NVIDIA DALI imports."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        raise missing_dali(err, what=what, alternative=alternative) from err
