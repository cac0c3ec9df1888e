"""The two roles a node can have."""

CONTROL_PLANE = "control-plane"
WORKER = "worker"
ALL = (CONTROL_PLANE, WORKER)
