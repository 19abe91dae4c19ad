"""Batch inference on Ray (`cervical-tf predict --ray`): an optional room, whose `ray` dependency is
installed by requirements-ray.txt; nothing outside it imports `ray`."""
