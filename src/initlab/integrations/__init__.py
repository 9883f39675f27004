"""initlab in the tools a training loop already uses; each module imports its framework only when it is
imported itself: ``initlab.integrations.lightning`` (a PyTorch Lightning callback),
``initlab.integrations.huggingface`` (a ``transformers.TrainerCallback``) and
``initlab.integrations.tensorboard`` (the watched statistics as TensorBoard scalars)."""
