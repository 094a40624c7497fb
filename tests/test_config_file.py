"""A node's options come from flags, MYCELIUM_* variables, a TOML file and defaults, in that order
of precedence, through one schema (the node parser's long options) and one set of checks."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mycelium.errors import ConfigError
from mycelium.ui.cli import main_parser, node_main, node_parser
from mycelium.ui.options import build_node_config

ROOT = Path(__file__).resolve().parent.parent
PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWHL4YAEKtdUkXSxiQcvJketRmXvMzNLWT1A5sM9fFrGLa"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("MYCELIUM_")]:
        monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return node_parser().parse_args(list(argv))


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MYCELIUM_")}
    return subprocess.run(
        [sys.executable, "-m", "mycelium", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


# --- precedence: flag > environment > file > default, each pair -------------------------------

LAYERS = {"file": "bootstrap-timeout = 5", "env": "6", "flag": "7"}
VALUES = {"default": 30.0, "file": 5.0, "env": 6.0, "flag": 7.0}


@pytest.mark.parametrize(
    ("given", "winner"),
    [
        ((), "default"),
        (("file",), "file"),
        (("env",), "env"),
        (("flag",), "flag"),
        (("file", "env"), "env"),
        (("file", "flag"), "flag"),
        (("env", "flag"), "flag"),
        (("file", "env", "flag"), "flag"),
    ],
)
def test_the_highest_layer_given_wins(
    given: tuple[str, ...], winner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = []
    if "file" in given:
        argv += ["--config", str(write(tmp_path, LAYERS["file"]))]
    if "env" in given:
        monkeypatch.setenv("MYCELIUM_BOOTSTRAP_TIMEOUT", LAYERS["env"])
    if "flag" in given:
        argv += ["--bootstrap-timeout", LAYERS["flag"]]
    args = parse(*argv)
    assert args.bootstrap_timeout == VALUES[winner]
    assert args.effective.sources["bootstrap_timeout"] == winner


def test_a_higher_layer_replaces_a_repeatable_option_rather_than_extending_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(write(tmp_path, 'announce = ["/ip4/1.1.1.1/tcp/1", "/ip4/2.2.2.2/tcp/2"]'))
    assert parse("--config", config).announce == ["/ip4/1.1.1.1/tcp/1", "/ip4/2.2.2.2/tcp/2"]
    monkeypatch.setenv("MYCELIUM_ANNOUNCE", "/ip4/3.3.3.3/tcp/3")
    assert parse("--config", config).announce == ["/ip4/3.3.3.3/tcp/3"]
    assert parse("--config", config, "--announce", "/ip4/4.4.4.4/tcp/4").announce == ["/ip4/4.4.4.4/tcp/4"]


def test_a_switch_set_in_the_file_can_be_turned_off_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(write(tmp_path, "no-split = true"))
    assert parse("--config", config).no_split is True
    monkeypatch.setenv("MYCELIUM_NO_SPLIT", "0")
    assert parse("--config", config).no_split is False


def test_the_file_can_be_named_by_mycelium_config_and_the_flag_beats_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.toml").write_text("capacity = 3")
    (tmp_path / "b.toml").write_text("capacity = 4")
    monkeypatch.setenv("MYCELIUM_CONFIG", str(tmp_path / "a.toml"))
    assert parse().capacity == 3
    assert parse("--config", str(tmp_path / "b.toml")).capacity == 4


def test_mycelium_node_and_mycelium_node_command_read_the_file_alike(tmp_path: Path) -> None:
    config = str(write(tmp_path, 'capacity = 4\ncodec = "int8"'))
    for args in (parse("--config", config), main_parser().parse_args(["node", "--config", config])):
        assert (args.capacity, args.codec) == (4, "int8")


def test_a_file_value_reaches_the_node_config(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f'bootstrap = ["{PEER}"]\nbootstrap-timeout = 5\ncapacity = 4\ncodec = "int8"\n'
        'shard = "3/10"\nno-trust = true\nheartbeat = 2\n',
    )
    node = build_node_config(parse("--config", str(config)))
    assert [str(a) for a in node.net.bootstrap] == [PEER]
    assert node.net.bootstrap_timeout == 5.0
    assert (node.capacity, node.learn.codec, node.learn.shard, node.learn.shards) == (4, "int8", 3, 10)
    assert node.trust is None and node.timing.heartbeat == 2.0


def test_the_example_file_is_a_valid_config(tmp_path: Path) -> None:
    node = build_node_config(parse("--config", str(ROOT / "examples" / "node.toml")))
    assert node.learn.shard == 3 and node.task == "digits-mlp"


# --- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bootstrap_timeout = 5", "unknown key 'bootstrap_timeout' (did you mean 'bootstrap-timeout'?"),
        ("capacty = 5", "unknown key 'capacty' (did you mean 'capacity'?)"),
        ("[node]\ncapacity = 5", "unknown table [node]"),
        ('capacity = "10"', 'capacity must be an integer, got "10" (a string)'),
        ("capacity = 0", "capacity must be a positive integer, got 0"),
        ("capacity = 2.5", "capacity must be an integer, got 2.5 (a number)"),
        ("heartbeat = true", "heartbeat must be a number, got true (a boolean)"),
        ('policy = "closed"', "policy must be one of open, invite; got 'closed'"),
        ('dashboard = "yes"', 'dashboard must be true or false, got "yes" (a string)'),
        ('bootstrap = "/ip4/1.2.3.4/tcp/1"', "bootstrap must be a list of strings"),
        ("shard = 3", "shard must be a string, got 3 (an integer)"),
        ("capacity = ", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(text: str, message: str, tmp_path: Path) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        parse("--config", str(config))
    assert message in str(caught.value)
    assert str(config) in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"config file {tmp_path / 'no.toml'} does not exist"):
        parse("--config", str(tmp_path / "no.toml"))


def test_a_bad_environment_value_is_checked_like_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCELIUM_CAPACITY", "0")
    with pytest.raises(ConfigError, match="MYCELIUM_CAPACITY must be a positive integer, got 0"):
        parse()


def test_an_unknown_key_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    result = cli("node", "--config", str(write(tmp_path, "capacty = 5")), "--print-config")
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"mycelium: error: {tmp_path / 'node.toml'}: unknown key 'capacty' (did you mean 'capacity'?)"
    ]


# --- --print-config ------------------------------------------------------------------------------


def test_print_config_round_trips_through_config(tmp_path: Path) -> None:
    config = write(tmp_path, f'bootstrap = ["{PEER}"]\ncapacity = 4\nno-split = true\nname = "a \\"b\\""\n')
    first = cli(
        "node", "--config", str(config), "--lr", "0.25", "--print-config", env={"MYCELIUM_HEARTBEAT": "2"}
    )
    assert first.returncode == 0, first.stderr
    printed = tomllib.loads(first.stdout)
    assert printed["capacity"] == 4 and printed["lr"] == 0.25 and printed["heartbeat"] == 2.0
    assert printed["bootstrap"] == [PEER] and printed["no-split"] is True and printed["name"] == 'a "b"'
    assert "capacity = 4  # file" in first.stdout
    assert "heartbeat = 2.0  # env MYCELIUM_HEARTBEAT" in first.stdout
    assert "lr = 0.25  # flag" in first.stdout

    saved = tmp_path / "saved.toml"
    saved.write_text(first.stdout)
    again = cli("node", "--config", str(saved), "--print-config")
    assert again.returncode == 0, again.stderr
    assert tomllib.loads(again.stdout) == printed
    assert all(
        line.endswith(("# file", "# default")) or line.startswith("#") for line in again.stdout.splitlines()
    )


def test_print_config_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    assert node_main(["--data-dir", str(data_dir), "--print-config"]) == 0
    assert f'data-dir = "{data_dir}"  # flag' in capsys.readouterr().out
    assert not data_dir.exists()


def test_print_config_refuses_what_the_node_would_refuse(tmp_path: Path) -> None:
    result = cli("node", "--config", str(write(tmp_path, 'group = "maybe"')), "--print-config")
    assert result.returncode == 2 and "--group 'maybe' must be new, auto, none" in result.stderr
