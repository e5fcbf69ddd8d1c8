"""Local fakes of the CRM HTTP APIs the connectors talk to (real HTTP servers on 127.0.0.1)."""
