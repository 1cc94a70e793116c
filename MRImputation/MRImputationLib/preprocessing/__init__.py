"""From raw volumes to a model's input: N4, registration, masks, normalization, QC, a folder's manifest."""
