"""The simulated quarter: B2B SaaS marketing, driven through the public APIs."""
