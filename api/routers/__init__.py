"""evalkube: api/routers."""
