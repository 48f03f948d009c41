"""Translation between the OpenAI and Anthropic wire formats (requests, responses, streams)."""
