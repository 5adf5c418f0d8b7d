"""What a user runs after training: `maskopt remove`, `mask`, `serve` and the page."""
