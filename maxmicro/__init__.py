"""maxmicro: MANet micro-action recognition on MA-52 in JAX/Flax."""
