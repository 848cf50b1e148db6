"""Ground floor: services every vfsr capability may use (stopping on signals, ...); imports none of them."""
