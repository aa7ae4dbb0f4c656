"""evalkube: operator."""
