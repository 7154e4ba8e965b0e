"""`python -m mmnasdsl ...` (also what `torchrun -m mmnasdsl` runs)."""

from mmnasdsl.cli import main

if __name__ == "__main__":
    main()
