"""Networks: architectures, weights, training, checkpoints, features, the attack copy, readouts."""
