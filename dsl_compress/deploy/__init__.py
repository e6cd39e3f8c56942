"""Deployment formats: how a plan is written for a serving stack (compressed-tensors) and what
the stack (vLLM) accepts, checked before any work."""
