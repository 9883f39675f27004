"""initlab: does your network's initialization let signal and gradient through?

Built on He, Zhang, Ren, Sun, "Delving Deep into Rectifiers" (ICCV 2015): PReLU and the
variance-preserving ("He"/"Kaiming") initialization.
"""

from . import theory
from .activations import no_decay_param_groups
from .check import CheckReport, check
from .models import mlp, paper_net, plain_net
from .probe import ProbeResult, probe
from .schemes import apply_init, parse_scheme
from .traced_init import init_from_trace

__all__ = ["CheckReport", "ProbeResult", "apply_init", "check", "init_from_trace", "mlp", "no_decay_param_groups", "paper_net", "parse_scheme", "plain_net",
           "probe", "theory"]
__version__ = "0.1.0"
