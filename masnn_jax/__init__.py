"""masnn-jax."""
