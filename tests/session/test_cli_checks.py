"""Every flag is checked before the first connection: each bad flag is refused with exit code 2
and one line that names the flag and the valid choices; several problems are all reported at
once; venue options are refused before any instrument request."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import core.checks
import core.run
from core.checks import UsageError, check_out, url_problem
from core.run import async_main
from core.testing.fake_servers import serve_http
from tests.session.sims import BYBIT_BTC, BYBIT_ETH, rest_of

PREFIX = "python -m core.run: error: "
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port
CEILING_S = 20


@pytest.fixture
def no_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the run got as far as fetching instruments."""

    async def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the checks let this request through to the instrument fetch")

    monkeypatch.setattr(core.run, "fetch_instruments", refuse)


async def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run the CLI; assert exit 2; return the error lines (each must carry the prefix)."""
    assert await async_main(argv, handle_signals=False) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(PREFIX)]
    assert errors, lines
    return [line.removeprefix(PREFIX) for line in errors]


@pytest.mark.parametrize(("argv", "message"), [
    (["--endpoint", "bybit=notaurl"],
     "--endpoint bybit=notaurl: bad websocket URL: no scheme; expected ws:// or wss://"),
    (["--endpoint", "bybit=https://stream.bybit.com/v5/public/linear"],
     "bad websocket URL: scheme 'https'; expected ws:// or wss://"),
    (["--endpoint", "bybit.rest=wss://api.bybit.com"],
     "--endpoint bybit.rest=wss://api.bybit.com: bad REST base URL: scheme 'wss'; "
     "expected http:// or https://"),
    (["--endpoint", "bybit=wss://"], "bad websocket URL: no host; expected ws://HOST"),
    (["--endpoint", "bybit=wss://bad_host!/x"], "host 'bad_host!' is not a host name"),
    (["--endpoint", "bybit=wss://example.com:99999"], "bad websocket URL: not a valid URL"),
    (["--endpoint", "bybit.rest=https://api.bybit.com?x=1"], "takes no query or fragment"),
    (["--endpoint", "bybit"], "--endpoint bybit: expected VENUE=URL (websocket) or "
                              "VENUE.rest=URL"),
    (["--endpoint", "htx=wss://api.hbdm.com/linear-swap-ws"],
     "--endpoint htx=wss://api.hbdm.com/linear-swap-ws: 'htx' is not among --plugins (bybit)"),
    (["--endpoint", "kraken=ws://x"], "unknown plugin 'kraken'; valid choices: "),
    (["--endpoint", "bybit=ws://a.example", "--endpoint", "bybit=ws://b.example"],
     "the websocket URL of bybit is given twice"),
    (["--opt", "htx.l2_source=step0"], "--opt htx.l2_source=step0: 'htx' is not among "
                                      "--plugins (bybit)"),
    (["--opt", "bybit.foo=1"], "--opt bybit.foo=1: unknown option 'foo'; valid keys: l2_depth"),
    (["--opt", "bybit.l2_depth=7"], "--opt bybit.l2_depth=7: bybit l2_depth must be one of "
                                    "50, 200, 1000"),
    (["--opt", "bybit=7"], "--opt bybit=7: expected VENUE.KEY=VALUE"),
    (["--plugins", "bybit,bybit"], "--plugins: 'bybit' is given twice"),
    (["--duration", "-5"], "--duration must be a positive number of seconds"),
    (["--flush-interval", "0"], "--flush-interval must be a positive number of seconds"),
    (["--channels", "tob,book"], "unknown channel 'book'; valid choices: tob, l2, trades"),
])
async def test_each_bad_flag_is_one_line_and_exit_2(
        argv: list[str], message: str, tmp_path: Path, no_fetch: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--plugins", "bybit", "--out", str(tmp_path / "data"),
            "--endpoint", f"bybit.rest={DEAD}"]
    if argv[0] == "--plugins":
        base = base[2:]
    errors = await refused([*base, *argv], capsys)
    assert len(errors) == 1, errors
    assert message in errors[0], errors[0]


async def test_options_of_a_venue_without_options(tmp_path: Path, no_fetch: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    errors = await refused(["--plugins", "bitget", "--out", str(tmp_path),
                            "--opt", "bitget.depth=5"], capsys)
    assert errors == ["--opt bitget.depth=5: unknown option 'depth'; bitget has no options"]


async def test_every_problem_is_reported_at_once(tmp_path: Path, no_fetch: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    errors = await refused(["--plugins", "bybit,htx", "--out", str(tmp_path),
                            "--endpoint", "bybit=notaurl", "--endpoint", "htx.rest=ftp://x",
                            "--opt", "bybit.foo=1", "--opt", "htx.l2_source=size_5"], capsys)
    assert len(errors) == 4, errors
    assert [e.split(":")[0] for e in errors] == [
        "--endpoint bybit=notaurl", "--endpoint htx.rest=ftp", "--opt bybit.foo=1",
        "--opt htx.l2_source=size_5"]
    assert "valid keys: l2_depth" in errors[2]
    assert "htx l2_source must be one of size_20, size_150, step0" in errors[3]


async def test_out_that_is_a_file(tmp_path: Path, no_fetch: None,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("not a folder")
    errors = await refused(["--plugins", "bybit", "--out", str(out)], capsys)
    assert errors == [f"--out {out}: exists and is not a folder; give a folder to record into"]
    under = out / "data"
    errors = await refused(["--plugins", "bybit", "--out", str(under)], capsys)
    assert errors == [f"--out {under}: {out} is not a folder; give a folder to record into"]


async def test_a_bad_out_is_reported_with_the_other_mistakes_and_nothing_is_created(
        tmp_path: Path, no_fetch: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("not a folder")
    errors = await refused(["--plugins", "bybit", "--opt", "bybit.foo=1", "--out", str(out)],
                           capsys)
    assert [e.split(":")[0] for e in errors] == ["--opt bybit.foo=1", f"--out {out}"]
    fresh = tmp_path / "new" / "data"
    errors = await refused(["--plugins", "bybit", "--opt", "bybit.foo=1", "--out", str(fresh)],
                           capsys)
    assert [e.split(":")[0] for e in errors] == ["--opt bybit.foo=1"]
    assert not (tmp_path / "new").exists()  # a refused command leaves no folder behind


def test_out_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(core.checks.tempfile, "mkstemp", denied)
    assert check_out(tmp_path / "out") == [
        f"--out {tmp_path / 'out'}: cannot write there (Permission denied); give a folder you "
        f"can write to"]


def test_out_is_created_and_left_clean(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    assert check_out(out) == []
    assert out.is_dir() and list(out.iterdir()) == []


async def test_every_venue_without_instruments_is_named_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # bitget converts nothing with them: it starts without (a warning), and is not named.
    errors = await refused(["--plugins", "htx,bitget,gateio", "--out", str(tmp_path / "data"),
                            "--cache-dir", str(tmp_path / "empty"), "--no-spreads",
                            "--endpoint", f"htx.rest={DEAD}", "--endpoint", f"gateio.rest={DEAD}",
                            "--endpoint", f"bitget.rest={DEAD}"], capsys)
    assert len(errors) == 2, errors
    assert [e.split(":")[0] for e in errors] == ["htx", "gateio"]
    assert all("cannot load instruments" in e for e in errors)


async def test_unlisted_symbols_are_all_named(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, rest_of("bybit", BYBIT_BTC, BYBIT_ETH))
            errors = await refused(["--plugins", "bybit", "--symbols", "BTC-USDC,SOL-USDT",
                                    "--out", str(tmp_path), "--endpoint", f"bybit.rest={rest}"],
                                   capsys)
            nursery.cancel_scope.cancel()
    assert len(errors) == 2
    assert errors[0].startswith("--symbols: bybit does not list symbol 'BTC-USDC' (2 symbols "
                                "known); close matches: BTC-USDT")
    assert errors[1].startswith("--symbols: bybit does not list symbol 'SOL-USDT'")


@pytest.mark.parametrize(("url", "schemes", "ok"), [
    ("wss://stream.bybit.com/v5/public/linear", ("ws", "wss"), True),
    ("ws://127.0.0.1:8080", ("ws", "wss"), True),
    ("ws://[::1]:8080/x?y=1", ("ws", "wss"), True),
    ("WSS://Stream.Bybit.com", ("ws", "wss"), True),
    ("https://api.bybit.com/", ("http", "https"), True),
    ("stream.bybit.com", ("ws", "wss"), False),
    ("ws://:80", ("ws", "wss"), False),
    ("ws://host:0", ("ws", "wss"), False),
    ("ws://exa mple.com", ("ws", "wss"), False),
])
def test_url_problem(url: str, schemes: tuple[str, ...], ok: bool) -> None:
    assert (url_problem(url, schemes) is None) is ok


def test_usage_error_prefixes_every_further_problem() -> None:
    text = f"{PREFIX}{UsageError('first', 'second')}"
    assert text.splitlines() == [f"{PREFIX}first", f"{PREFIX}second"]

