"""Static checks of the deployment files (Dockerfile, docker-compose.yml, .env.example) against the CLI."""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from sqlalchemy.engine import make_url

from bench.cli import build_parser
from bench.spec import load_spec
from bench.store.storage import normalize_url

ROOT = Path(__file__).resolve().parents[1]
BENCH_SERVICES = ("init", "worker", "dashboard", "report")

# Compose interpolation: `$$` (a literal `$`), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err},
# ${NAME?err}, and bare $NAME.
_VAR = re.compile(r"\$\$"
                  r"|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_]\w*)")


def expand(text: str, env: dict[str, str]) -> str:
    """Interpolate one string the way docker compose does (without nesting)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        value, op, arg = env.get(name), m.group("op"), m.group("arg")
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if missing and op in (":-", "-"):
            return arg
        if missing and op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def expand_all(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return expand(node, env)
    if isinstance(node, list):
        return [expand_all(x, env) for x in node]
    if isinstance(node, dict):
        return {expand_all(k, env): expand_all(v, env) for k, v in node.items()}
    return node


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for x in node for s in strings(x)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    return []


@functools.cache
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@functools.cache
def env_example() -> dict[str, str]:
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            env[key.strip()] = value.strip()
    return env


def services(env: dict[str, str] | None = None) -> dict[str, Any]:
    return expand_all(raw_compose(), env or {})["services"]


@functools.cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instr(name: str) -> list[tuple[int, str]]:
    return [(i, args) for i, (word, args) in enumerate(dockerfile()) if word == name]


def copy_sources() -> list[str]:
    """Source paths of every COPY (the last word is the destination; --flags skipped)."""
    return [src.rstrip("/") for _, args in instr("COPY") for src in args.split()[:-1]
            if not src.startswith("--")]


# ---------------------------------------------------------------- docker-compose.yml


def test_all_services_present() -> None:
    assert {"postgres", *BENCH_SERVICES} <= set(services())


def test_postgres_healthcheck_named_volume_loopback_port() -> None:
    pg = services()["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    named = [v.split(":")[0] for v in pg["volumes"] if not v.startswith((".", "/", "~"))]
    assert named and set(named) <= set(raw_compose()["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert pg["ports"] == ["127.0.0.1:5432:5432"]


def test_startup_order() -> None:
    svc = services()
    assert svc["init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "dashboard", "report"):
        assert svc[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}, name
    assert svc["init"]["restart"] == "no"


def test_report_is_on_demand_and_writes_to_the_host() -> None:
    report = services()["report"]
    assert report["profiles"] == ["report"]
    assert "./reports:/app/reports" in report["volumes"]


def _host_ips(ports: list[Any]) -> list[str]:
    ips = []
    for p in ports:
        if isinstance(p, dict):  # long syntax
            ips.append(p.get("host_ip", ""))
        else:
            parts = str(p).split(":")
            ips.append(parts[0] if len(parts) == 3 else "")  # "8080" or "8080:80" bind every interface
    return ips


def test_nothing_published_beyond_localhost() -> None:
    published = {name: _host_ips(s.get("ports", [])) for name, s in services().items()}
    assert published["postgres"] and published["dashboard"]
    for name, ips in published.items():
        assert all(ip == "127.0.0.1" for ip in ips), f"{name} publishes on {ips}"


def _seconds(duration: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    h, m, s = (int(x or 0) for x in parts.groups())
    return 3600 * h + 60 * m + s


def test_worker_is_scalable_and_stops_gracefully() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "on-failure"
    assert worker["stop_signal"] == "SIGTERM"
    assert _seconds(worker["stop_grace_period"]) >= 30


def test_bench_services_share_one_image() -> None:
    svc = services()
    assert len({(json.dumps(svc[n]["build"], sort_keys=True), svc[n]["image"]) for n in BENCH_SERVICES}) == 1
    assert svc["init"]["build"]["context"] == "."


@pytest.mark.parametrize("env_name", ["defaults", ".env.example"])
def test_commands_parse_with_the_real_cli(env_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {} if env_name == "defaults" else env_example()
    svc = services(env)
    pg_env = svc["postgres"]["environment"]
    workdir = PurePosixPath(instr("WORKDIR")[-1][1])
    for name in BENCH_SERVICES:
        # As in the container: the storage comes from the service's environment (BENCH_STORAGE).
        monkeypatch.setenv("BENCH_STORAGE", svc[name]["environment"]["BENCH_STORAGE"])
        args = build_parser().parse_args(svc[name]["command"])
        assert args.command == name
        url = make_url(normalize_url(args.storage))
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port) == ("postgres", 5432), name
        assert (url.username, url.password, url.database) == (
            pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]), name
        if name != "dashboard":
            # The spec is resolved against WORKDIR in the image, where the Dockerfile copied it from the repo.
            assert PurePosixPath(args.spec).parts[0] in copy_sources()
            spec = load_spec(ROOT / args.spec)
        if name == "worker":
            assert args.threads == 1 and args.device == "cpu"
        if name == "dashboard":
            assert args.host == "0.0.0.0"
            assert svc[name]["ports"][0].endswith(f":{args.port}")
        if name == "report":
            out = PurePosixPath(args.out) if args.out else workdir / "reports" / spec.name
            targets = [PurePosixPath(v.split(":")[1]) for v in svc[name]["volumes"]]
            assert any(t in out.parents for t in targets), f"report {out} is not in a host mount {targets}"


@pytest.mark.parametrize("env_name", ["defaults", ".env.example"])
def test_storage_url_and_password_never_on_a_command_line(env_name: str) -> None:
    """A container's command line is visible to every user of the host (`ps`, `docker inspect`): the URL with its
    password travels in the environment only."""
    env = {} if env_name == "defaults" else env_example()
    svc = services(env)
    password = svc["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for name in BENCH_SERVICES:
        words = strings(svc[name]["command"]) + strings(svc[name].get("entrypoint", []))
        assert "--storage" not in words, name
        assert not any("://" in w or password in w for w in words), (name, words)
        assert make_url(svc[name]["environment"]["BENCH_STORAGE"]).password == password, name
    assert not any("--storage" in a for _, a in instr("CMD") + instr("ENTRYPOINT"))


def test_default_spec_is_the_quickstart() -> None:
    args = build_parser().parse_args(services()["worker"]["command"])
    assert args.spec == "studies/quickstart.toml"
    assert (ROOT / args.spec).is_file()


def test_every_variable_is_documented_and_every_documented_one_used() -> None:
    used = {m.group("name") or m.group("bare") for s in strings(raw_compose()) for m in _VAR.finditer(s)
            if m.group(0) != "$$"}
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "BENCH_SPEC", "BENCH_WORKER_THREADS",
            "POSTGRES_PORT"} <= used
    assert used == set(env_example())


def test_env_example_values_match_compose_defaults() -> None:
    # `cp .env.example .env` must describe the configuration one gets without a .env.
    assert services(env_example()) == services()


def test_expand_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert expand("${SET:-d}/${EMPTY:-d}/${UNSET:-d}", env) == "x/d/d"
    assert expand("${EMPTY-d}/${UNSET-d}/${SET}/$SET/$${SET}", env) == "/d/x/x/${SET}"
    with pytest.raises(KeyError):
        expand("${UNSET:?needed}", env)


# ---------------------------------------------------------------- Dockerfile, .dockerignore


def test_dockerfile_base_image_is_a_build_arg() -> None:
    # An ARG used in FROM must come before the first FROM.
    assert dockerfile()[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    [(_, from_args)] = instr("FROM")
    assert from_args in ("${BASE_IMAGE}", "$BASE_IMAGE")


def _arg_default(name: str) -> str:
    [value] = [a.split("=", 1)[1].strip('"') for _, a in instr("ARG") if a.split("=", 1)[0] == name]
    return value


def test_dockerfile_installs_cpu_torch_before_the_package() -> None:
    assert _arg_default("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    torch_pin = Requirement(_arg_default("TORCH_SPEC"))
    [torch_range] = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"] if Requirement(d).name == "torch"]
    assert torch_pin.name == "torch" and next(iter(torch_pin.specifier)).version in torch_range.specifier
    runs = instr("RUN")
    torch_i = next(i for i, a in runs if "$TORCH_SPEC" in a and "--index-url" in a)
    package_i = next(i for i, a in runs if re.search(r"pip install (--no-deps )?\.(\s|$)", a))
    copy_src_i = next(i for i, a in instr("COPY") if a.startswith("bench/"))
    copy_deps_i = next(i for i, a in instr("COPY") if a.startswith("pyproject.toml"))
    assert torch_i < copy_deps_i < copy_src_i < package_i


def test_dockerfile_copies_what_the_install_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"pyproject.toml", project["readme"], "bench", "studies"} <= set(copy_sources())
    assert all((ROOT / p).exists() for p in ("pyproject.toml", "bench", "studies"))


def test_dockerfile_runtime_user_and_entrypoint() -> None:
    users = instr("USER")
    assert users and users[-1][1].split(":")[0] not in ("root", "0")
    assert instr("WORKDIR")[-1][1] == "/app"
    assert json.loads(instr("ENTRYPOINT")[-1][1]) == ["bench"]
    assert json.loads(instr("CMD")[-1][1]) == ["--help"]


def test_dockerignore_excludes_local_state_but_not_the_sources() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert {".venv", "runs", "reports", ".git", ".mypy_cache", ".pytest_cache", ".env"} <= set(patterns)
    assert any("__pycache__" in p for p in patterns)
    for src in copy_sources():
        assert not any(fnmatch.fnmatch(src, p) for p in patterns), f"{src} is copied but ignored"
