"""Loop-based float64 CNN layers, written to be checked by eye."""
