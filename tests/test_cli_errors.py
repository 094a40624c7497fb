"""Bad input gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

UNREACHABLE = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWHL4YAEKtdUkXSxiQcvJketRmXvMzNLWT1A5sM9fFrGLa"


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mycelium: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_malformed_multiaddr_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("node", "--data-dir", str(tmp_path), "--bootstrap", "/ip4/1.2.3/tcp/1")
    assert result.returncode == 2
    assert "--bootstrap '/ip4/1.2.3/tcp/1' is not a valid multiaddr" in one_line_error(result)


def test_a_bootstrap_address_without_peer_id_is_refused(tmp_path: Path) -> None:
    result = run_cli("node", "--data-dir", str(tmp_path), "--bootstrap", "/ip4/127.0.0.1/tcp/4001")
    assert result.returncode == 2
    assert "must end with /p2p/<peer id>" in one_line_error(result)


def test_an_unreachable_bootstrap_peer_fails_naming_the_address_and_why(tmp_path: Path) -> None:
    result = run_cli(
        "node",
        "--data-dir",
        str(tmp_path),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--group",
        "none",
        "--bootstrap",
        UNREACHABLE,
        "--bootstrap-timeout",
        "3",
    )
    assert result.returncode == 1
    line = one_line_error(result)
    assert "could not reach any bootstrap peer within 3 s" in line
    assert UNREACHABLE in line and "127.0.0.1:1" in line


def test_an_unwritable_data_dir_exits_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("node", "--data-dir", str(blocker / "data"), "--group", "none")
    assert result.returncode == 2
    assert f"data dir {blocker / 'data'} is not writable" in one_line_error(result)


def test_an_address_already_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "node", "--data-dir", str(tmp_path), "--group", "none", "--listen", f"/ip4/127.0.0.1/tcp/{port}"
        )
    assert result.returncode == 2
    assert "cannot listen on" in one_line_error(result)


def test_unknown_choices_are_refused_by_the_parser(tmp_path: Path) -> None:
    for args in (["--partition", "zipf:2"], ["--group", "maybe"], ["--shard", "3/2"]):
        result = run_cli("node", "--data-dir", str(tmp_path), *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


def test_groups_without_bootstrap_is_a_clear_error() -> None:
    result = run_cli("groups", "--task", "digits-mlp")
    assert result.returncode == 2
    assert "--bootstrap is required" in one_line_error(result)
