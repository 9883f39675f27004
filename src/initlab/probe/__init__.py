"""Probe a network: one forward and backward pass, per-layer statistics kept on the device.

For every call of a Conv/Linear layer the probe records, in float32 on the model's device:
the input second moment E[x²] (and its per-position map for convs), the output's variance and
second moment, the gradient's variance and second moment at the layer's output (Δy, with its
per-position map) and input (Δx), and the variance of the weight gradient. Gradients come
from a random Gaussian direction g ~ N(0, 1) at the network's output: the backward pass of the
scalar ⟨output, g⟩. Statistics move to the host once per probe, in a single transfer for all seeds.
Only the reductions (sums, dot products, per-channel and per-position sums, Welford (Var, mean)
pairs on a GPU) run on the device; means, differences and ratios are host arithmetic on the
transferred sums, so a probe adds a few kernel launches per layer and no host-device sync.

Capture uses forward hooks plus tensor hooks (no full backward hooks), so in-place ReLUs are
safe: a tensor hook registered before an in-place op sees the gradient of the value before it.
The user's model is left as found: parameters are never written (gradients come from
``torch.autograd.grad``, so ``.grad`` fields stay untouched), buffers are restored, the RNG state
is forked, and every hook is removed, also when the forward raises.

How one statistic travels, e.g. a layer's output second moment E[y²]:
``seeds.probe`` builds each seed's model and calls ``passes._run_pass``, which runs the forward
under ``capture._Recorder``. At the layer's forward hook ``_LayerRecording._record_call`` takes
the device reduction (``reductions._variance_and_second_moment``: Σy² as one dot product, its
slot in the pass's ``_RawStore``) and keeps the recipe "Σy²/N" under the name
``output_second_moment``. After the backward, ``records._recipes_of_pass`` collects every recipe
by name, ``seeds.probe`` moves all seeds' reductions to the host at once, ``records._unpack``
evaluates each name into a ``PassRecord``, and ``compare.build_frame`` makes it the ``var_y``
column, beside the chain's prediction ``var_y_pred``; ``verdicts`` judges it.
"""

from .devices import resolve_device
from .errors import ProbeError
from .passes import DIRECTION, ModelInput
from .result import ProbeResult
from .seeds import probe

__all__ = ["DIRECTION", "ModelInput", "ProbeError", "ProbeResult", "probe", "resolve_device"]
