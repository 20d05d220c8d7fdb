"""dnncheck where users already are: frameworks' hooks (each module imports its framework, an optional
dependency, only when used)."""
