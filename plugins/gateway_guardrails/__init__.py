"""Built-in plugin: the guardrails ``max_input_chars``, ``regex_block`` and ``pii_redact``."""

from gateway import hookimpl
from gateway.guardrails.base import GuardrailFactory
from gateway.hookspecs import RegisterGuardrail
from gateway_guardrails.max_input_chars import MaxInputCharsGuardrail
from gateway_guardrails.pii_redact import PiiRedactGuardrail
from gateway_guardrails.regex_block import RegexBlockGuardrail

# name -> factory; adding a guardrail is one line here.
GUARDRAILS: dict[str, GuardrailFactory] = {
    "max_input_chars": MaxInputCharsGuardrail,
    "regex_block": RegexBlockGuardrail,
    "pii_redact": PiiRedactGuardrail,
}


@hookimpl
def register_guardrails(register: RegisterGuardrail) -> None:
    """Register every guardrail of :data:`GUARDRAILS`."""
    for name, factory in GUARDRAILS.items():
        register(name, factory)
