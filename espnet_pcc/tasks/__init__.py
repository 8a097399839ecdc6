"""ESPnet tasks whose trainer clips per core."""
