"""`python -m capt.dev.stack up|status|env|down` — the same commands as `capt dev`."""

from capt.dev.stack.cli import dev

if __name__ == "__main__":
    dev(prog_name="capt dev")
