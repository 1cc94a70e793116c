"""`python -m MRImputationLib ...` is the same as `mrimpute ...`."""

from .cli import main

raise SystemExit(main())
