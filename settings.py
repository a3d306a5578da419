"""Load config.yaml: one place for every setting, secrets from the environment.

Values may reference environment variables as ``${NAME}`` or ``${NAME:-default}``.
Each component reads its own section and builds its typed config from it
(e.g. ``ClientConfig.from_mapping(settings["accounts"])``), so this module stays
ignorant of what the sections mean.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parent
DEFAULT_PATH = ROOT / "config.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """config.yaml is missing, malformed, or names an unset variable without default."""


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise ConfigError(f"{where}: environment variable {name} is not set and has no default")
            return default
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read config.yaml (or ``path``), expand ``${VAR:-default}``, return plain dicts."""
    p = Path(path) if path else Path(os.environ.get("CHSI_BOT_CONFIG", DEFAULT_PATH))
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return _expand(raw, p.name)


def resolve_path(value: str) -> Path:
    """A path from config: absolute as given, relative to the project root otherwise."""
    p = Path(value)
    return p if p.is_absolute() else ROOT / p


def server_secret(cfg: Mapping[str, Any]) -> bytes:
    """The secret every worker and instance must share (signed session ids, keyed hashes):
    ``web.session_secret`` (env WEB_SESSION_SECRET), else one generated once into ``web.secret_file``."""
    import secrets
    import time

    web = section(cfg, "web")
    if web.get("session_secret"):
        return str(web["session_secret"]).encode()
    path = resolve_path(str(web.get("secret_file") or "var/web_session.key"))
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        try:
            value = path.read_text(encoding="ascii").strip()
            if len(value) >= 32:
                return value.encode()
        except FileNotFoundError:
            try:   # two workers racing: one creates the file, the other reads it
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
            continue
        time.sleep(0.05)   # being written by another worker
    raise ConfigError(f"{path}: unreadable session secret; set WEB_SESSION_SECRET")


def section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One section of the config as a dict (empty when absent)."""
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config.yaml: section {name!r} must be a mapping")
    return dict(value)
