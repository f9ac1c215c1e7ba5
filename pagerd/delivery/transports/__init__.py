"""Adapters from the `Transport` port to the places notifications go."""
