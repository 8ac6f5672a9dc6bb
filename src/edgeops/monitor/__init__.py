"""Monitoring: collect the agents' inference logs, check quality, drift and performance, decide on retraining."""
