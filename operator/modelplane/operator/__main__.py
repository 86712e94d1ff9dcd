"""`python -m modelplane.operator`."""

from modelplane.operator.cli import main

if __name__ == "__main__":
    main()
