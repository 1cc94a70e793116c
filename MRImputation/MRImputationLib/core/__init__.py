"""The ground floor: volumes, contrasts, files, atomic writes, errors, progress events, cancellation."""
