"""`cervical-tf serve`: an HTTP server (TF Serving's REST API, /v1/detect) and the web viewer.

Kept empty of imports so `cervical-tf --help` loads neither FastAPI nor TensorFlow: `command`
registers the verb, and `app` (with the models) is imported only when the server starts.
"""
