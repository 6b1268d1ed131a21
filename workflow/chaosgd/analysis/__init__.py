"""Analysis of finished results: the claims and their verdicts, and the figures' plots."""
