"""Serving (the `serve` extra): best-of-N by reward model, OpenAI-compatible routes, scoring, metrics.

`Engine` (engine.py) holds the models behind a batching scheduler (scheduler.py); `create_app` (app.py)
builds the FastAPI app; `run_server` / `ServerThread` (server.py) run it under uvicorn. Imports stay
in the submodules so that `import tether.serve` needs neither fastapi nor torch.
"""
