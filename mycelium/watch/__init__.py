"""`mycelium watch`: an observer peer and the live explorer it serves (web page or terminal)."""
