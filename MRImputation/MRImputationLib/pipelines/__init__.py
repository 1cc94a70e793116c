"""What the commands do, end to end: impute, train, evaluate, export, demo."""
