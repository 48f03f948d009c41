"""Built-in plugin: the guardrails ``max_input_chars``, ``regex_block`` and ``pii_redact``."""
