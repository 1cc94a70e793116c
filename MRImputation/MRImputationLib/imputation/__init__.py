"""Running a trained model over whole volumes."""
