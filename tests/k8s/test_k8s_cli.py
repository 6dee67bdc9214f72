"""``fastkong k8s translate``: called as a handler, and as a process."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastkong.k8s.cli import add_parser, cmd_translate, main
from tests.k8s.conftest import GOLDEN, REPO

CASE = GOLDEN / "ingress-path-types" / "in.yaml"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fastkong")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_add_parser_registers_k8s_translate() -> None:
    args = parse("k8s", "translate", "-f", "a.yaml", "-f", "dir", "--ingress-class", "kong")
    assert args.func is cmd_translate
    assert args.filename == ["a.yaml", "dir"]
    assert args.ingress_class == ["kong"]
    assert args.output is None and args.no_validate is False


def test_translates_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "translate", "-f", str(CASE)]) == 0
    out = capsys.readouterr()
    config = yaml.safe_load(out.out)
    assert [s["name"] for s in config["services"]] == ["shop.api.8080", "shop.web.80"]
    assert out.err == ""


def test_directory_list_kind_and_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = list(yaml.safe_load_all(CASE.read_text()))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.yml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs[:2]})
    )
    (tmp_path / "rest.json").write_text(yaml.safe_dump_all(docs[2:]))
    (tmp_path / "notes.txt").write_text("not a manifest")
    out = tmp_path / "kong.yml"
    assert main(["k8s", "translate", "-f", str(tmp_path), "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    with CASE.open() as f:
        expected = subprocess_free_translate(f.read())
    assert out.read_text() == expected


def subprocess_free_translate(text: str) -> str:
    args = parse("k8s", "translate", "-f", "-")
    buf = io.StringIO()
    saved = sys.stdout
    sys.stdout = buf
    try:
        assert cmd_translate(args, stdin=io.StringIO(text)) == 0
    finally:
        sys.stdout = saved
    return buf.getvalue()


def test_problems_go_to_stderr_and_exit_is_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = GOLDEN / "broken-objects" / "in.yaml"
    assert main(["k8s", "translate", "-f", str(src), "-f", str(tmp_path / "missing.yaml")]) == 0
    err = capsys.readouterr().err
    assert "missing.yaml" in err
    assert "error: KongPlugin default/typo-plugin: unknown plugin 'rate-limitting'; left out" in err


def test_bad_yaml_is_reported_and_other_files_still_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    assert main(["k8s", "translate", "-f", str(bad), "-f", str(CASE)]) == 0
    out = capsys.readouterr()
    assert "bad.yaml: not YAML" in out.err
    assert "shop.api.8080" in out.out


def test_exit_1_when_nothing_could_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["k8s", "translate", "-f", str(tmp_path / "nope.yaml")]) == 1
    assert main(["k8s", "translate", "-f", str(tmp_path)]) == 1
    assert "nothing could be read" in capsys.readouterr().err


def test_runs_as_a_process() -> None:
    code = "import sys; from fastkong.k8s.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, "k8s", "translate", "-f", "-"],
        input=CASE.read_text(),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == subprocess_free_translate(CASE.read_text())


def test_gateway_controller_name_picks_the_gateway_classes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = str(GOLDEN / "httproute-basic" / "in.yaml")
    assert main(["k8s", "translate", "-f", case]) == 0
    ours = yaml.safe_load(capsys.readouterr().out)
    assert any(s["name"].startswith("httproute.default.") for s in ours["services"])
    # The other GatewayClass in the case: its Gateway's only HTTPRoute is translated instead.
    argv = [
        "k8s",
        "translate",
        "-f",
        case,
        "--gateway-controller-name",
        "example.com/other-controller",
    ]
    assert main(argv) == 0
    theirs = yaml.safe_load(capsys.readouterr().out)
    routes = [r["name"] for s in theirs["services"] for r in s["routes"]]
    assert routes == ["httproute.default.not-ours.0.0"]


def test_combined_services_flag(capsys: pytest.CaptureFixture[str]) -> None:
    case = str(GOLDEN / "httproute-combined" / "in.yaml")
    assert main(["k8s", "translate", "-f", case]) == 0
    names = [s["name"] for s in yaml.safe_load(capsys.readouterr().out)["services"]]
    assert "httproute.default.a.0" in names
    argv = ["k8s", "translate", "-f", case, "--combined-services-from-different-httproutes"]
    assert main(argv) == 0
    names = [s["name"] for s in yaml.safe_load(capsys.readouterr().out)["services"]]
    assert "httproute.default.svc.default.echo.80.1_default.other.8080.3" in names
