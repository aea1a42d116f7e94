"""Loads the compiled operator library, with an error that says what to do
when it is missing (after NATTEN's libnatten check)."""
import importlib

import torch  # noqa: F401  (loads libtorch, which mula_ops._C links against)

_BUILD_HINT = (
    "mula_ops: the compiled operator library mula_ops._C could not be loaded ({error}).\n"
    "Build it from the repository root against the torch installed in this environment:\n"
    "    pip install -e . --no-build-isolation\n"
    "(--no-build-isolation makes pip compile against this torch instead of downloading another.) "
    "If you upgraded torch since building, rebuild: the library is tied to one torch version.\n"
    "The pure-PyTorch references in mula_ops.reference work without it."
)


def load_library():
    try:
        return importlib.import_module("mula_ops._C")
    except ImportError as error:
        raise ImportError(_BUILD_HINT.format(error=error)) from error
