"""The probe's one error type."""


class ProbeError(ValueError):
    """The model and input cannot be probed (no covered layers, shape mismatch, no gradient)."""
