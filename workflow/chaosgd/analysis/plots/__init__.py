"""The paper's figures, by family, and their shared style."""
