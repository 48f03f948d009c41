"""The GPU node agent (``gateway node``): reads the GPUs, places vLLM engines on them, runs and
supervises the engines, registers them with the gateway, follows scale orders, and exports GPU
metrics in dcgm-exporter's names (``docs/node.md``)."""
