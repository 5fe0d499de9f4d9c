"""GPU utilisation from the vendors' Prometheus exporters (AMD device-metrics exporter, NVIDIA DCGM exporter)."""
