"""`python -m modelplane.server`: same as `modelplane-server`."""

from modelplane.server.cli import main

# vLLM starts worker processes that re-import the main module: start only when run directly.
if __name__ == "__main__":
    main()
