"""Helpers for the project's tests: real servers on loopback, throwaway databases."""
