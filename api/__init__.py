"""evalkube's REST API: lmms-eval's evaluation-server contract, backed by EvalJobs.

`app.create_app` builds the FastAPI app; `server.launch_server` / `evalkube-api` run it.
"""
