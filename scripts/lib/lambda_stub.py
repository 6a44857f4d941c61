"""What the measurement scripts share: the environment Lambda gives a function, pointed at a
local Runtime API (the scripts serve it themselves, each with its own events)."""
import os


def function_env(runtime_port, name, region="us-east-1", **extra):
    """The function's environment: the Runtime API on loopback `runtime_port`, 128 MB, `region`,
    dummy credentials unless given, no instance metadata; `extra` adds or replaces variables."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime_port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env
