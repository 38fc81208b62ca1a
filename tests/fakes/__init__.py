"""Loopback fakes of the venues the simulator does not speak yet (Binance, OKX), for their
protocol and end-to-end tests."""
