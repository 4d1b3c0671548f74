"""Classify points by ring: a small MLP trained with SGD."""

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 32
steps = 300
hidden = 32


@dataclass
class ClassifierConfig:
    n_inputs: int = 2
    n_classes: int = 4
    hidden: int = 32


class Classifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_inputs, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.n_classes),
        )

    def forward(self, x):
        return self.net(x)


def train(data_dir=".", out_dir=".", iters=steps, seed=0, device="cpu"):
    torch.manual_seed(seed)
    data = np.load(os.path.join(data_dir, "train.npz"))
    x = torch.from_numpy(data["x"]).to(device)
    y = torch.from_numpy(data["y"]).to(device)
    args = dict(n_inputs=x.shape[1], n_classes=int(y.max()) + 1, hidden=hidden)
    model = Classifier(ClassifierConfig(**args)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    start = time.time()
    for _ in range(iters):
        idx = torch.randint(0, len(x), (batch_size,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(
        {"model_args": args, "state_dict": model.state_dict()}, os.path.join(out_dir, "ckpt.pt")
    )
    return loss.item(), (time.time() - start) / 60
