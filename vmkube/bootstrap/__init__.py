"""Kubernetes from reachable VMs: plan, rendered files, and one small module per phase."""
