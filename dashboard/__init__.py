"""The team leads' dashboard and the weekly check-in digest; reads the OKR store only."""
