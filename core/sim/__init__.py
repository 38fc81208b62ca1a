"""Simulated venues: a seeded market and fake venues that speak each venue's real protocol.

* :mod:`core.sim.market`: the true state of every simulated book (integer ticks and lots per
  venue listing), scripted steps and the event vocabulary fake venues consume. Pure.
* :mod:`core.sim.simulator`: the seeded market simulator (a moving fair price per symbol shared by
  every venue, queue-reactive-like book events, occasional cross-venue dislocations). Pure.
* :mod:`core.sim.speaker`: the sans-IO contract of a *venue speaker*, which turns subscriptions
  and market events into one venue's frames; speakers live next to their plugins
  (``plugins/<venue>/fake.py``) and register through ``bookwire_register_fake_venues``.
* :mod:`core.sim.server`: the one generic trio server that carries any speaker over websockets
  (loopback TCP or in-memory streams; one or several paths per venue) plus its REST side
  (instruments, book snapshots), on loopback or answered in memory.
* :mod:`core.sim.soak`: ``python -m core.sim.soak``, a long run against simulated venues that
  reports throughput, reconnects and resident memory over time.

Loopback only: nothing here connects to a real venue.
"""
