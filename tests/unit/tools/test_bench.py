"""tools/bench.py's pure helpers: percentiles, median runs, ratios, wrk's output, settings filter, table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tool_loader import load_tool


bench = load_tool("bench")

WRK_OUTPUT = """\
Running 2s test @ https://127.0.0.1:38007/bytes/2
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.47ms    3.11ms  40.52ms   80.00%
    Req/Sec     4.02k   210.11     4.31k    75.00%
  Latency Distribution
     50%  812.00us
     75%   13.10ms
     90%   15.00ms
     99%    1.20s
  8043 requests in 2.00s, 1.13MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   4021.50
Transfer/sec:    578.21KB
"""


# --- percentiles and latency -------------------------------------------------------------


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50.0
    assert bench.percentile(values, 99) == 99.0
    assert bench.percentile(values, 100) == 100.0
    assert bench.percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_not_an_error() -> None:
    assert math.isnan(bench.percentile([], 50))


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(min_value=0.1, max_value=100))
def test_percentile_is_one_of_the_samples_and_bounded(values: list[float], p: float) -> None:
    ordered = sorted(values)
    result = bench.percentile(ordered, p)
    assert result in ordered
    assert ordered[0] <= result <= ordered[-1]


def test_latency_figures_merge_samples_of_every_client() -> None:
    figures = bench.latency_figures(iter([3.0, 1.0, 2.0, 4.0]), "handshake")
    assert figures == {"handshake_p50_ms": 2.0, "handshake_p99_ms": 4.0, "handshake_samples": 4}


def test_latency_figures_without_samples_are_nan() -> None:
    figures = bench.latency_figures([])
    assert math.isnan(figures["latency_p50_ms"]) and figures["latency_samples"] == 0


def test_thin_keeps_short_lists_and_spaces_long_ones_evenly() -> None:
    assert bench.thin([1.0, 2.0], cap=5) == [1.0, 2.0]
    thinned = bench.thin([float(v) for v in range(100)], cap=10)
    assert thinned == [float(v) for v in range(0, 100, 10)]


# --- rates, medians, ratios --------------------------------------------------------------


def test_rate_figures_per_wall_and_per_cpu_second() -> None:
    figures = bench.rate_figures(1000, 2.0, 0.5)
    assert figures["per_s"] == 500.0 and figures["per_cpu_s"] == 2000.0


def test_rate_figures_without_cpu_time_are_nan_not_infinite() -> None:
    figures = bench.rate_figures(1000, 0.0, 0.0)
    assert math.isnan(figures["per_s"]) and math.isnan(figures["per_cpu_s"])


def test_median_run_is_a_real_run_with_every_rate_kept() -> None:
    runs = [{"per_s": 30.0, "tag": "a"}, {"per_s": 10.0, "tag": "b"}, {"per_s": 20.0, "tag": "c"}]
    chosen = bench.median_run(runs)
    assert chosen["tag"] == "c" and chosen["runs"] == [30.0, 10.0, 20.0]
    assert "runs" not in runs[2]  # the caller's run is not modified


def test_median_run_never_prefers_a_failed_run() -> None:
    runs = [{"per_s": float("nan")}, {"per_s": 5.0}, {"per_s": 7.0}]
    assert bench.median_run(runs)["per_s"] == 5.0


def test_median_run_of_no_run_is_an_error() -> None:
    with pytest.raises(ValueError, match="no run"):
        bench.median_run([])


def test_ratio_only_of_finite_numbers_over_nonzero() -> None:
    assert bench.ratio(3, 2) == 1.5
    assert bench.ratio(3, 0) is None
    assert bench.ratio(float("nan"), 2) is None
    assert bench.ratio(None, 2) is None
    assert bench.ratio("3", 2) is None


# --- resumption --------------------------------------------------------------------------


def test_resumption_fraction_is_over_the_connections_that_could_resume() -> None:
    children = [{"could_resume": 99, "resumed": 99, "offered": 99}, {"could_resume": 99, "resumed": 49, "offered": 99}]
    figures = bench.resumption_figures(children)
    assert figures["resumed"] == 148 and figures["not_resumed"] == 50
    assert figures["resumed_fraction"] == pytest.approx(148 / 198)


def test_resumption_fraction_without_any_chance_is_nan() -> None:
    assert math.isnan(bench.resumption_figures([{"could_resume": 0, "resumed": 0, "offered": 0}])["resumed_fraction"])


# --- settings of another checkout --------------------------------------------------------


def test_unknown_settings_are_left_out_and_named() -> None:
    kept, dropped = bench.select_known_settings({"a": 1, "b": 2, "c": 3}, {"a", "c"})
    assert kept == {"a": 1, "c": 3} and dropped == ["b"]


def test_settings_pass_as_written_when_the_gateway_cannot_list_them() -> None:
    kept, dropped = bench.select_known_settings({"a": 1}, None)
    assert kept == {"a": 1} and dropped == []


def test_a_required_unknown_setting_skips_rather_than_starts_a_different_server(
        capsys: pytest.CaptureFixture[str]) -> None:
    gateway = bench.Gateway(src=None, known_settings={"prefix", "ssl_cert"})
    with pytest.raises(bench.UnknownSettings, match="ssl_verify_client"):
        gateway.check_settings({"prefix": "/x", "ssl_verify_client": "on"}, required=["ssl_verify_client"])
    assert gateway.check_settings({"prefix": "/x", "log_level": "error"}) == {"prefix": "/x"}
    assert "log_level" in capsys.readouterr().out


# --- wrk's output ------------------------------------------------------------------------


def test_parse_wrk_reads_rate_latency_and_every_error() -> None:
    parsed = bench.parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 8043 and parsed["elapsed_s"] == 2.0
    assert parsed["latency_p50_ms"] == pytest.approx(0.812) and parsed["latency_p99_ms"] == 1200.0
    assert parsed["errors"] == 3 + 2 + 4
    assert "timeout 2" in parsed["first_error"] and "Non-2xx or 3xx responses: 4" in parsed["first_error"]


def test_parse_wrk_without_errors() -> None:
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line)
    parsed = bench.parse_wrk(clean)
    assert parsed["errors"] == 0 and parsed["first_error"] is None


def test_parse_wrk_refuses_output_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        bench.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_duration_ms_units_and_garbage() -> None:
    assert bench.parse_duration_ms("812.00us") == pytest.approx(0.812)
    assert bench.parse_duration_ms("1.00m") == 60000.0
    with pytest.raises(ValueError, match="not a wrk duration"):
        bench.parse_duration_ms("12 ms")


# --- the table and its notes -------------------------------------------------------------


def _phase(per_s: float, **more: object) -> dict[str, object]:
    return {"per_s": per_s, "per_cpu_s": per_s * 2, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "errors": 0,
            **more}


def test_table_puts_servers_side_by_side_with_ratios() -> None:
    results = {"trio-gw": {"handshakes": _phase(500.0)}, "nginx": {"handshakes": _phase(1000.0)}}
    text = bench.table(results)
    line = next(li for li in text.splitlines() if li.startswith("handshakes: full TLS 1.3/s"))
    assert line.split()[-3:] == ["500", "1000", "0.50x"]
    errors = next(li for li in text.splitlines() if li.strip().startswith("errors"))
    assert not errors.endswith("x")  # no ratio of error counts
    assert "keepalive" not in text  # a phase nobody ran has no rows


def test_table_of_three_gives_each_a_ratio_to_the_last() -> None:
    results = {"trio-gw": {"handshakes": _phase(600.0)}, "baseline": {"handshakes": _phase(500.0)},
               "nginx": {"handshakes": _phase(1000.0)}}
    lines = bench.table(results).splitlines()
    assert lines[0].split()[-2:] == ["trio-gw/nginx", "baseline/nginx"]
    line = next(li for li in lines if li.startswith("handshakes: full TLS 1.3/s"))
    assert line.split()[-5:] == ["600", "500", "1000", "0.60x", "0.50x"]


def test_table_shows_a_skipped_phase_and_no_ratio_for_it() -> None:
    results = {"trio-gw": {"mtls": {"skipped": True, "reason": "old"}}, "nginx": {"mtls": _phase(100.0)}}
    line = next(li for li in bench.table(results).splitlines() if li.startswith("mtls: full"))
    assert "skipped" in line and not line.endswith("x")


def test_notes_name_what_the_table_cannot_show() -> None:
    results = {"trio-gw": {
        "mtls": {"skipped": True, "reason": "this gateway does not know the setting(s) ssl_verify_client"},
        "handshakes": _phase(10.0, handshake_end="client's Finished sent", errors=2, first_error="boom", resumed=1),
        "resumption": _phase(10.0, resumed_fraction=0.5, resumed=5, could_resume=10, offered=10),
    }}
    text = "\n".join(bench.notes(results))
    assert "skipped, this gateway does not know" in text
    assert "timed to the client's side only" in text
    assert "2 errors, first: boom" in text and "1 handshakes were resumed" in text
    assert "only 50.0 % of the reconnects resumed" in text


def test_no_notes_for_a_clean_run() -> None:
    results = {"nginx": {"handshakes": _phase(10.0, handshake_end=bench.TICKET_END, resumed=0),
                         "resumption": _phase(10.0, resumed_fraction=1.0)}}
    assert bench.notes(results) == []


def test_workers_summary_compares_per_cpu_second_and_per_second() -> None:
    results = {"trio-gw x1": {"keepalive": {"per_s": 2000.0, "per_cpu_s": 2500.0}},
               "trio-gw x2": {"keepalive": {"per_s": 3600.0, "per_cpu_s": 2450.0}},
               "trio-gw x4": {"keepalive": {"skipped": "no room"}}}
    assert bench.workers_summary(results, [1, 2, 4]) == (
        "2 workers vs 1 (keep-alive): 0.98x the requests per server CPU-second, 1.80x the requests per second")
    assert bench.parse_args(["--workers", "1,2", "--reuseport"]).workers == [1, 2]


# --- the interpreter the gateway runs on ------------------------------------------------------------


def test_a_gateway_runs_on_the_interpreter_it_is_given() -> None:
    assert bench.Gateway(None, python=bench.Path("/opt/py/bin/python")).command() == [
        "/opt/py/bin/python", "-m", "trio_gw"]
    assert "/opt/py/bin/python" not in bench.Gateway(None).command()


def test_an_interpreter_that_cannot_run_is_refused_before_anything_starts() -> None:
    args = bench.parse_args(["--baseline-python", "/nonexistent/python", "--phases", "keepalive"])
    assert bench._check_args(args) == "--baseline-python /nonexistent/python: not an executable"
    args = bench.parse_args(["--python", bench.sys.executable, "--phases", "keepalive"])
    assert bench._check_args(args) is None
