"""Models, weights, calibration data and manifests in; nothing here knows rules."""
