"""initlab: does your network's initialization let signal and gradient through?

Built on He, Zhang, Ren, Sun, "Delving Deep into Rectifiers" (ICCV 2015): PReLU and the
variance-preserving ("He"/"Kaiming") initialization.

The public names below are imported on first use, so that ``initlab --version`` and ``--help``
answer without importing torch.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> the submodule that defines it
_PUBLIC = {
    "CheckReport": "check", "check": "check",
    "ProbeResult": "probe", "probe": "probe",
    "apply_init": "schemes", "parse_scheme": "schemes",
    "init_from_trace": "traced_init",
    "mlp": "models", "paper_net": "models", "plain_net": "models",
    "no_decay_param_groups": "activations",
    "watch": "watch", "Watch": "watch",
}
_MODULES = ("theory", "correlation", "conditioning")  # pure-function modules, imported on first use
__all__ = sorted([*_PUBLIC, *_MODULES])


class _PublicAPI(types.ModuleType):
    """The package module: ``initlab.probe`` and ``initlab.check`` stay the functions even after
    their submodules of the same name are imported (import machinery sets the submodule as an
    attribute of the package; that attribute is not stored for a public function's name)."""

    def __getattr__(self, name: str):
        if name in _MODULES:
            return importlib.import_module(f".{name}", __name__)
        if name not in _PUBLIC:
            raise AttributeError(f"module 'initlab' has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(__all__))


sys.modules[__name__].__class__ = _PublicAPI
