"""Feature extraction: mel, F0, energy and content, all at the mel frame rate (93.75 frames/s)."""
