"""What the `capt` CLI asks of the workflows: connect, start/update/query clusters, render."""
