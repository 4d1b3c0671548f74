"""The fixed vocabularies persona files draw on: techniques, research directions, fields.

A persona names techniques and directions by key; the prompt shows the title. The technique
keys double as the offline agent's priors over concrete code changes, so a key is a promise
about which kind of change a persona favours, not just a heading.
"""

from types import MappingProxyType
from typing import Final

TECHNIQUES: Final = MappingProxyType(
    {
        "moe": "Mixture of Experts (MoE)",
        "ssm": "State Space Models (SSMs)",
        "flash_attention": "FlashAttention",
        "quantization": "Quantization",
        "rope": "Rotary Positional Embedding (RoPE)",
        "mla": "Multihead Latent Attention (MLA)",
        "muon": "Muon Optimizer",
        "tokenization": "Tokenization",
        "norms_activations": "Norms and Activation Functions",
        "sampling": "Sampling Techniques",
        "lr_schedules": "Learning-Rate Schedules",
        "initialization": "Weight Initialization",
        "adaptive_optimizers": "Adaptive Optimizers",
        "regularization": "Regularization and Weight Decay",
        "gradient_clipping": "Gradient Clipping",
        "gated_mlp": "Gated Feed-Forward Layers (SwiGLU)",
        "qk_norm": "Query-Key Normalization",
        "weight_tying": "Weight Tying",
        "residual_scaling": "Residual Scaling",
        "label_smoothing": "Label Smoothing",
        "mixed_precision": "Mixed Precision",
        "curriculum": "Curriculum and Data Ordering",
    }
)
"""Technique key -> the title the prompt shows (a qualifier may be appended with " & ")."""

DIRECTIONS: Final = MappingProxyType(
    {
        "growing_networks": "Growing and Evolving Networks",
        "nas": "Neural Architecture Search",
        "meta_optimizers": "Meta Optimizers",
        "weight_repairing": "Weight Repairing",
        "superposition": "Superposition Layers",
        "interpretability": "Mechanistic Interpretability",
        "topological_learning": "Topological Representation Learning",
        "dynamic_sparsity": "Dynamic Computational Sparsity",
        "memory_modules": "Memory Modules",
        "lie_equivariance": "Lie Group Equivariance",
        "forgetting": "Catastrophic Forgetting Alleviation",
        "objectives": "Alternative Objective Functions",
        "circuits": "Circuits and Feature Design",
    }
)
"""Research-direction key -> the title the prompt shows."""

# Exactly the list both seed prompts carry; a persona without its own `fields` gets this one.
STANDARD_FIELDS: Final[tuple[str, ...]] = (
    "information theory",
    "probability theory",
    "statistical learning theory",
    "linear algebra",
    "functional analysis",
    "numerical analysis",
    "high-dimensional geometry",
    "representation theory",
    "random matrix theory",
    "measure theory",
    "convex analysis",
    "Fourier analysis",
    "optimization theory",
    "variational calculus",
    "discrete mathematics",
    "combinatorics",
    "graph theory",
    "algebraic topology",
    "differential geometry",
    "tensor calculus",
    "stochastic processes",
    "game theory",
    "dynamical systems",
    "differential equations",
    "category theory",
    "algorithms & complexity theory",
    "compiler theory",
    "programming languages",
    "formal verification",
    "type theory",
    "machine learning",
    "information retrieval",
    "knowledge representation & reasoning",
)

SAVANT_ERAS: Final[tuple[str, ...]] = (
    "antiquity",
    "medieval",
    "early-modern",
    "18th-century",
    "19th-century",
    "20th-century",
    "21st-century",
)
"""Eras a savant may belong to, oldest first."""

CONTEMPORARY: Final = "contemporary"
"""The only era for collaborators and specialists."""
