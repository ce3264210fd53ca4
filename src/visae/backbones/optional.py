"""Import an optional package (timm, open_clip, torchvision) with an error that says what to do."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from visae.errors import VisaeError


def optional_import(module: str, extra: str) -> ModuleType:
    """``import module``, or a VisaeError: not installed (install the extra) or installed but broken."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None)
        if not missing or missing.split(".")[0] == module:
            raise VisaeError(f"{module} is not installed", f"pip install 'visae[{extra}]'") from None
        if missing.split(".")[0] == "torchvision":
            raise _broken(module, e) from None
        raise VisaeError(f"{module} is installed but needs {missing}, which is missing", f"pip install {missing.split('.')[0]}") from None
    except Exception as e:  # e.g. a torchvision build for another torch: "operator torchvision::nms does not exist"
        raise _broken(module, e) from None


def _broken(module: str, e: BaseException) -> VisaeError:
    first = str(e).splitlines()[0] if str(e) else ""
    return VisaeError(
        f"{module} is installed but fails to import ({type(e).__name__}: {first})",
        f"{module} imports torchvision, which must be the build made for this torch ({torch.__version__}); "
        "reinstall the matching torchvision, or use an hf: backbone, which needs neither",
    )
