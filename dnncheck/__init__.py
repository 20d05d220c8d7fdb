"""dnncheck: a pre-flight checklist for training deep neural networks."""

__version__ = "0.1.0"
