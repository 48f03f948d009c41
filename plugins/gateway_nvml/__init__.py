"""Built-in plugin: the ``nvml`` GPU backend (NVIDIA's NVML through ``nvidia-ml-py``)."""
