"""Entry point of `python -m bench` (`make bench`)."""

from bench.cli import main

# vLLM spawns processes that re-import the main module: only the real entry point runs main().
if __name__ == "__main__":
    main()
