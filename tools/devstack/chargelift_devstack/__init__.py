"""Runs the native chargelift stack: real Mosquitto and PostgreSQL on loopback, and the services.

Used by ``make dev`` (``chargelift-devstack up``) and by the test suite's fixtures, so
the tests exercise exactly what a developer runs.
"""
