"""The e2e tests drive the real engine like tests/engine does."""

from tests.engine.conftest import engine_env, make_stack, project, pulumi_bin  # noqa: F401
