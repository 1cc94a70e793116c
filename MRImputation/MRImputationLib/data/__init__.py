"""Where subjects come from: folder discovery, IXI, the phantom, subject-wise splits, InVesalius projects (CT)."""
