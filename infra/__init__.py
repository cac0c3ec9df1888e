"""vmkube's plain-Python core. Only infra.stack imports pulumi."""
