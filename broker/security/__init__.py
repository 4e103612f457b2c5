"""Authentication: SASL mechanisms (SCRAM, PLAIN) and the credentials they check."""
