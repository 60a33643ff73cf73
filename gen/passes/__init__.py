"""Compiler passes: small pure functions ``Plan -> Plan``, run in order by gen.pipeline."""
