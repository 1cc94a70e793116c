"""The VAE-UNet family: the other contrasts -> one declared target, through a variational bottleneck (family.py)."""
