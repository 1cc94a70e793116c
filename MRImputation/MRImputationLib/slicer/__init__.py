"""Everything the Slicer modules need: MRML bridge, child processes, jobs, panels and their decisions."""
