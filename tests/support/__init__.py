"""Real parts for the tests: a Mosquitto broker, databases, subprocesses."""
