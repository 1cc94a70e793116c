"""Model bundles, loading, the installed-model store, slicing, the linear baseline; one subpackage per model family (mmgan, cyclegan, vaeunet)."""
