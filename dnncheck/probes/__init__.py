"""Probes: short training runs and the tensors they train on."""
