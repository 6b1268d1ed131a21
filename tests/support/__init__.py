"""Helpers the tests share: imported by test files, never a test file imported by another."""
