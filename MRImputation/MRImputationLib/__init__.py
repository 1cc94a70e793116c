"""MRImputationLib: missing MRI contrast synthesis (MM-GAN) without Slicer.

The library never imports slicer, qt, ctk or vtk at module level; torch and ants are imported
where they are used, so importing it is fast.
"""

__version__ = "0.1.0"
