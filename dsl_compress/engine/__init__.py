"""Plan x model -> Compression: masks, simulated quantization, distillation; the only stage that changes a model."""
