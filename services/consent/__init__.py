"""The consent context: the one system of record for what each person agreed to."""
