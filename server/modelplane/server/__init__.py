"""modelplane's serving pod: an OpenAI-compatible HTTP API in front of an in-process vLLM engine."""

__version__ = "0.1.0"
