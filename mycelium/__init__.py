"""Mycelium: peer-to-peer federated learning groups on libp2p."""

__version__ = "0.1.0"
