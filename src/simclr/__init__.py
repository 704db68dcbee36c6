"""SimCLR pre-training and evaluation with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
