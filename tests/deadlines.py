"""Deadlines of the test settings, in seconds.

Fetches get generous deadlines so that a loaded machine never fails a good fetch; a test of a
deadline sets a short one itself and compares against how long the slow source would go on.
"""

FETCH_TIMEOUT = 30.0
SHORT_DEADLINE = 1.5
DRIP_SECONDS = 60
"""How long the test origin's /drip goes on, a byte at a time."""
