"""The CycleGAN family: two contrasts translated both ways, learned from unpaired patients (family.py)."""
