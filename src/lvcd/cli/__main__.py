"""`python -m lvcd.cli ...` (used by `accelerate launch -m lvcd.cli train ...` and the resume tests)."""

from lvcd.cli import main

if __name__ == "__main__":
    main()
