"""neuroattack: adversarial sensitivity of biological and artificial visual neurons."""

__version__ = "0.1.0"
