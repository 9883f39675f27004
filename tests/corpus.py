"""A corpus of real architectures for ``initlab check``: Hugging Face models built from small configs
(random init as the library draws it, no downloads), broken variants of them, and a plain-PyTorch
reference measurement.

``reference_statistics`` uses forward hooks and ``torch.autograd.grad`` only (no initlab code): for
every module that multiplies by a ≥ 2-D weight parameter (``nn.Linear``, ``nn.Conv*d``, Hugging
Face's ``Conv1D``) it records E[x²] of its input, E[y²] of its output and E[Δy²] of the gradient at
its output, for the backward pass of ⟨output, g⟩ with g drawn from ``direction_seed`` per output
tensor in output order (as the probe draws it).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn

transformers = None


def _transformers():
    global transformers
    if transformers is None:
        import transformers as module

        module.logging.set_verbosity_error()
        transformers = module
    return transformers


def _ids(vocab: int, batch: int = 4, length: int = 16) -> dict:
    return {"input_ids": torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))}


def _images(size: int, batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def build(name: str) -> tuple[nn.Module, Any]:
    """Return (model as its library initializes it, an example input) for a corpus entry."""
    T = _transformers()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "resnet-basic":
            config = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[2, 2, 2, 2],
                                    layer_type="basic", num_labels=10)
            return T.ResNetForImageClassification(config), _images(64)
        if name == "resnet-bottleneck":
            config = T.ResNetConfig(embedding_size=16, hidden_sizes=[32, 64, 128, 256], depths=[1, 2, 2, 1],
                                    layer_type="bottleneck", num_labels=10)
            return T.ResNetForImageClassification(config), _images(64)
        if name == "convnext":
            config = T.ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1], num_labels=10)
            return T.ConvNextForImageClassification(config), _images(64)
        if name == "efficientnet":
            config = T.EfficientNetConfig(width_coefficient=0.25, depth_coefficient=0.3, image_size=64,
                                          hidden_dim=320, num_labels=10, dropout_rate=0.0, drop_connect_rate=0.0)
            return T.EfficientNetForImageClassification(config), _images(64)
        if name == "vit":
            config = T.ViTConfig(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                                 image_size=32, patch_size=4, num_labels=10)
            return T.ViTForImageClassification(config), _images(32)
        if name == "bert":
            config = T.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                  intermediate_size=256, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
            return T.BertModel(config), _ids(1000)
        if name == "gpt2":
            config = T.GPT2Config(vocab_size=1000, n_embd=128, n_layer=4, n_head=4, n_positions=64, use_cache=False,
                                  bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
            return T.GPT2LMHeadModel(config), _ids(1000)
        if name == "llama":
            config = T.LlamaConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=256, max_position_embeddings=64,
                                   use_cache=False)
            return T.LlamaForCausalLM(config), _ids(1000)
    raise KeyError(name)


HEALTHY = ("resnet-basic", "resnet-bottleneck", "convnext", "vit", "bert", "gpt2", "llama")
# Hugging Face's EfficientNet draws its BatchNorm weights from N(0, 0.02) (``_init_weights``): the
# signal is gone at init (a plain forward pass says so too); pretrained weights hide it.
BROKEN_AS_BUILT = ("efficientnet",)


def redraw_weights(model: nn.Module, std: float | Callable[[torch.Tensor], float]) -> nn.Module:
    """Every ≥ 2-D parameter (weights and embedding tables) redrawn from N(0, std²) (std may depend on
    the weight), in place; a broken variant."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                scale = std(parameter) if callable(std) else std
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model


def _weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2 and not isinstance(module, nn.Embedding) \
                and not list(module.children()):
            found.append((name, module))
    return found


def _outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() and value.requires_grad else []
    if isinstance(value, dict):
        return [t for item in value.values() for t in _outputs(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _outputs(item)]
    return []


def reference_statistics(model: nn.Module, example_input: Any, direction_seed: int) -> dict[str, dict[str, float]]:
    """Per weight module (first call): {"input": E[x²], "output": E[y²], "grad_output": E[Δy²]}, in float64,
    from forward hooks and ``torch.autograd.grad`` alone. The model is used as it is (its mode)."""
    records: dict[str, dict[str, float]] = {}
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name):
        def record(module, args, output):
            if name in records:
                return None
            x = args[0]
            records[name] = {"input": x.detach().double().square().mean().item(),
                             "output": output.detach().double().square().mean().item()}
            output = output.clone()  # a tensor of its own: later in-place ops do not touch it
            captured[name] = output
            return output
        return record

    for name, module in _weight_modules(model):
        handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.enable_grad():
            inputs = example_input
            output = model(**inputs) if isinstance(inputs, dict) else model(inputs)
            outputs = _outputs(output)
            generator = torch.Generator().manual_seed(direction_seed)
            directions = [torch.randn(t.shape, generator=generator) for t in outputs]
            names = [n for n in records if captured[n].requires_grad]
            grads = torch.autograd.grad(outputs, [captured[n] for n in names], directions, allow_unused=True)
        for name, grad in zip(names, grads):
            records[name]["grad_output"] = float("nan") if grad is None else grad.double().square().mean().item()
    finally:
        for handle in handles:
            handle.remove()
    return records
