"""tether: RLHF you can read and trust."""
__version__ = "0.1.0"
