"""``python -m visae``: the visae command (also what ``torchrun -m visae`` runs)."""

from visae.cli import main

if __name__ == "__main__":
    main()
