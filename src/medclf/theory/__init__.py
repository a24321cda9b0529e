"""Question 3: which interval Boolean functions perceptrons and two-unit MLPs compute."""

from medclf.theory.interval import (
    FarkasWitness,
    Network,
    PerceptronAnswer,
    Verification,
    all_inputs,
    closed_form_computable,
    interval_function,
    perceptron_computable,
    relu_mlp,
    sign_mlp,
    verify,
)

__all__ = [
    "FarkasWitness",
    "Network",
    "PerceptronAnswer",
    "Verification",
    "all_inputs",
    "closed_form_computable",
    "interval_function",
    "perceptron_computable",
    "relu_mlp",
    "sign_mlp",
    "verify",
]
