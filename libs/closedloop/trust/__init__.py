"""Who is calling: bearer tokens, service certificates and the local trust material.

Inert for now: nothing in the services imports it yet.
"""
