"""Reporters: they read results and write them out; they never compute."""
