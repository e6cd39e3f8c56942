"""Models, weights, calibration data and manifests in; the output folder out, atomically.

May import `engine`, `resolve`, `plan`, `schema` and the root modules; nothing here knows the
rules language.
"""
