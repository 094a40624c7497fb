"""Placeholder, replaced below."""
def start_dashboard(node) -> None:
    pass
