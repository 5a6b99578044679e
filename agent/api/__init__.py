"""The HTTP surface: status API, dashboard, webhooks and /metrics (FastAPI on uvicorn)."""
