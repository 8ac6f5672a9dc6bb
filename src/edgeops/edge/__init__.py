"""The device side of edgeops: bundle verification, inference, the agent.

Everything in this package imports with numpy, onnxruntime, cryptography and the web stack only:
no scikit-learn, pandas, skl2onnx, Prefect, DVC, Great Expectations or Evidently (a test proves it).
"""
