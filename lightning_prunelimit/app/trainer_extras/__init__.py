"""What the app adds to the Trainer: atomic checkpoint writes, console lines, divergence guard."""
