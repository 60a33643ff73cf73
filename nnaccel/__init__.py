"""nnaccel: compressed neural networks to verified accelerators with open tools."""
