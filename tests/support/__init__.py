"""Helpers shared by the tests: real servers on loopback and the OpenAI spec validator."""
