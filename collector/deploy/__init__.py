"""Deployment: PKI, broker configuration, a local Mosquitto, the demo."""
