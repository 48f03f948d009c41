"""What Lambda passes a handler as its context (the fields powertools' Logger reads)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext


def lambda_context(function: str = "gateway-control-test") -> LambdaContext:
    made = LambdaContext()
    made._aws_request_id = f"{function}-request-1"
    made._function_name = function
    made._function_version = "$LATEST"
    made._memory_limit_in_mb = 512
    made._invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
    return made
