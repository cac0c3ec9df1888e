"""Where vmkube's code lived before it became the ``vmkube`` package.

Pulumi pickles each dynamic provider by reference (module and class name) into
every stack's state, and unpickles it on each later refresh, update and destroy.
Stacks created before the move name ``infra.stack.bootstrap.BootstrapProvider``,
``infra.stack.vmpool.VmPoolProvider``, ``infra.stack.vmpool.LeavingVmsProvider``
and ``infra.stack.keys.SshKeyProvider``: these modules keep those names working.
Nothing else belongs here (tests/engine/test_state_compat.py).
"""
