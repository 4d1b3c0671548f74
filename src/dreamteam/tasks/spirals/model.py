"""A small multilayer perceptron that classifies 2-D points.

The harness rebuilds ``MLP(MLPConfig(**model_args))`` from the checkpoint and calls
``model(x)`` on a batch of evaluation rows (float32, shape (B, 2)); the first output must be
class logits of shape (B, n_classes). Each row's logits must depend on that row alone.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class MLPConfig:
    n_inputs: int = 2
    n_classes: int = 5
    hidden: int = 64
    depth: int = 2  # hidden layers
    dropout: float = 0.0


class MLP(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.n_inputs
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.n_classes)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.head(self.body(x))
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss
