"""`capt codec`: payload keys and the Web UI's codec endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import click

from capt.cli.root import main


@main.group("codec")
def codec_group() -> None:
    """Payload encryption keys and the remote codec endpoint for the Web UI (docs/security.md)."""


@codec_group.command("keygen")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--id", "key_id", required=True, help="The new key's id (e.g. k2); it becomes current.")
def codec_keygen(path: Path, key_id: str) -> None:
    """Write a new AES-256 key into a key file and make it current; keys already there stay, so
    payloads they sealed still open (rotation). The file is written with mode 0600."""
    import base64

    from capt.client import codec

    existing: list[tuple[str, str]] = []
    if path.exists():
        try:
            keys = codec.load_key_file(path)
        except codec.CodecKeyError as err:
            raise click.ClickException(str(err)) from err
        existing = [(i, base64.b64encode(k).decode()) for i, k in keys.keys.items()]
    try:
        codec.write_key_file(path, key_id, existing=existing)
    except codec.CodecKeyError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{path}: current key {key_id} ({len(existing) + 1} key(s)); restart workers to use it")


@codec_group.command("server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    default=("http://127.0.0.1:8233", "http://localhost:8233"),
    show_default=True,
    help="Web UI origin allowed by CORS (repeatable).",
)
@click.option("--token-env", help="Require `Authorization: Bearer $<this variable>` on every request.")
def codec_server(host: str, port: int, origins: tuple[str, ...], token_env: str | None) -> None:
    """Serve /encode and /decode with the keys of CAPT_CODEC_KEY_FILE / CAPT_CODEC_KEYS, for the
    Web UI (`--ui-codec-endpoint`) and `temporal workflow show --codec-endpoint`."""

    from capt.client import codec, codec_server

    try:
        keys = codec.keys_from_env()
    except codec.CodecKeyError as err:
        raise click.ClickException(str(err)) from err
    if keys is None:
        raise click.ClickException(f"no keys: set {codec.KEY_FILE_ENV} or {codec.KEYS_ENV}")
    token = os.environ.get(token_env) if token_env else None
    if token_env and not token:
        raise click.ClickException(f"--token-env {token_env}: the variable is not set")
    server = codec_server.serve(codec.AesGcmCodec(keys), host, port, origins, token)
    click.echo(f"codec endpoint http://{host}:{port} (keys: {', '.join(keys.keys)}; current {keys.current})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(capt completion bash)" (or add it to your rc file)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the three shells click supports
    click.echo(cls(main, {}, "capt", "_CAPT_COMPLETE").source())
