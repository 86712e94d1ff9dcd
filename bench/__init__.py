"""modelplane's benchmark: its server against vLLM's own OpenAI server and the raw engine.

python -m bench                      # all three systems, concurrency 1, 16, 64
python -m bench operator             # operator scale: 200 ModelDeployments at once
"""
