"""The egress test's helpers: the recorder (sitecustomize.py, recorder.py) and the lifecycle driver."""
